using Journal.Storage;
using Journal.Tests.Storage;

namespace Journal.Tests.Cil;

/// <summary>
/// A device wrapper whose flushes wait for <see cref="FlushGate"/> when it is set (a slow disk): an asynchronous flush
/// awaits it, a synchronous one (the commit pipeline's, on its own thread) blocks its thread until it opens.
/// </summary>
public sealed class GatedDevice(BlockDevice inner) : ForwardingDevice(inner)
{
    public Task? FlushGate { get; set; }

    /// <summary>When set, every asynchronous flush completes on another thread (as a real disk's would).</summary>
    public bool AsyncFlushes { get; set; }
    public int FlushesWaiting;

    protected override void FlushCore()
    {
        if (FlushGate is { } gate)
        {
            Interlocked.Increment(ref FlushesWaiting);
            // Why we wait: this gate stands for a slow disk; the test opens it.
            gate.Wait();
            Interlocked.Decrement(ref FlushesWaiting);
        }
        Inner.Flush();
    }

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
