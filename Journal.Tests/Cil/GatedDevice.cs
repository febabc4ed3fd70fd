using Journal.Storage;

namespace Journal.Tests.Cil;

/// <summary>A device wrapper whose asynchronous flushes wait for <see cref="FlushGate"/> when it is set (a slow disk).</summary>
public sealed class GatedDevice(BlockDevice inner) : BlockDevice
{
    public Task? FlushGate { get; set; }

    /// <summary>When set, every asynchronous flush completes on another thread (as a real disk's would).</summary>
    public bool AsyncFlushes { get; set; }
    public int FlushesWaiting;

    public override string Name => inner.Name;
    public override long SectorCount => inner.SectorCount;
    protected override void ReadCore(long sector, Span<byte> buffer) => inner.Read(sector, buffer);
    protected override void WriteCore(long sector, ReadOnlySpan<byte> data) => inner.Write(sector, data);
    protected override void FlushCore() => inner.Flush();
    protected override void ExtendCore(long sectorCount) => inner.Extend(sectorCount);

    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        if (AsyncFlushes) await Task.Yield();
        if (FlushGate is { } gate)
        {
            Interlocked.Increment(ref FlushesWaiting);
            await gate.WaitAsync(cancellationToken);
            Interlocked.Decrement(ref FlushesWaiting);
        }
        await inner.FlushAsync(cancellationToken);
    }
}
