using Journal.Storage;
using Journal.Tests.Storage;

namespace Journal.Tests.Cil;

/// <summary>A device wrapper whose asynchronous flushes wait for <see cref="FlushGate"/> when it is set (a slow disk).</summary>
public sealed class GatedDevice(BlockDevice inner) : ForwardingDevice(inner)
{
    public Task? FlushGate { get; set; }

    /// <summary>When set, every asynchronous flush completes on another thread (as a real disk's would).</summary>
    public bool AsyncFlushes { get; set; }
    public int FlushesWaiting;

    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        if (AsyncFlushes) await Task.Yield();
        if (FlushGate is { } gate)
        {
            Interlocked.Increment(ref FlushesWaiting);
            await gate.WaitAsync(cancellationToken);
            Interlocked.Decrement(ref FlushesWaiting);
        }
        await Inner.FlushAsync(cancellationToken);
    }
}
