using Journal.Memory;

namespace Journal.Tests.Memory;

/// <summary>An allocator whose behaviour the test switches: normal, failing, or stalling until released.</summary>
public sealed class FlakyAllocator : IBufferAllocator
{
    public enum Mode { Normal, Fail, Stall }

    private readonly ManualResetEventSlim _stallReleased = new(true);
    private volatile Mode _mode;
    public long Allocations, Failures, Stalls;

    public Mode Current => _mode;

    /// <summary>When set, failing and stalling apply only to requests of this length (others are served normally).</summary>
    public int? OnlyLength { get; set; }

    public void Set(Mode mode)
    {
        if (mode == Mode.Stall) _stallReleased.Reset();
        _mode = mode;
        if (mode != Mode.Stall) _stallReleased.Set();
    }

    public byte[]? TryAllocate(int length)
    {
        switch (OnlyLength is { } only && only != length ? Mode.Normal : _mode)
        {
            case Mode.Fail:
                Interlocked.Increment(ref Failures);
                return null;
            case Mode.Stall:
                Interlocked.Increment(ref Stalls);
                // A stalled allocation: blocks its caller (never under a journal lock) until memory "returns".
                if (!_stallReleased.Wait(TimeSpan.FromSeconds(60))) return null;
                break;
        }
        Interlocked.Increment(ref Allocations);
        return new byte[length];
    }
}
