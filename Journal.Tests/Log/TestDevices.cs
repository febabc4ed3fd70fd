using Journal.Storage;

namespace Journal.Tests.Log;

/// <summary>
/// An in-memory device for the log tests whose asynchronous writes and flushes can be held back
/// (<see cref="WriteGate"/>, <see cref="FlushGate"/>) so completions arrive late and out of order, and which can fail
/// writes and flushes on demand.
/// </summary>
internal sealed class TestMemoryDevice : BlockDevice
{
    private readonly object _lock = new();
    private byte[] _data;

    public TestMemoryDevice(long sectors, string name = "mem") { _data = new byte[sectors * SectorSize]; Name = name; }

    public TestMemoryDevice(byte[] image, string name = "mem") { _data = image; Name = name; }

    public override string Name { get; }

    public override long SectorCount { get { lock (_lock) return _data.Length / SectorSize; } }

    /// <summary>When set, awaited before each asynchronous write is applied (receives the sector).</summary>
    public Func<long, Task>? WriteGate { get; set; }

    /// <summary>When set, thrown by writes to sectors it returns true for.</summary>
    public Func<long, bool>? FailWrite { get; set; }

    /// <summary>When set, awaited before each asynchronous flush takes effect.</summary>
    /// <remarks>
    /// Holds asynchronous flushes only: a synchronous one (<see cref="BlockDevice.Flush"/>, as a log writer with
    /// <see cref="Journal.Log.LogWriterOptions.FlushOnForcingThread"/> runs on its forcing thread) is not held.
    /// </remarks>
    public Func<Task>? FlushGate { get; set; }

    /// <summary>When true, flushes throw.</summary>
    public bool FailFlush { get; set; }

    public byte[] Image() { lock (_lock) return (byte[])_data.Clone(); }


    protected override void ReadCore(long sector, Span<byte> buffer)
    {
        lock (_lock) _data.AsSpan((int)(sector * SectorSize), buffer.Length).CopyTo(buffer);
    }

    protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
    {
        if (FailWrite?.Invoke(sector) == true) throw new BlockDeviceException(Name, sector, "injected write error");
        lock (_lock)
        {
            data.CopyTo(_data.AsSpan((int)(sector * SectorSize)));
        }
    }

    protected override async ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (WriteGate is { } gate) await gate(sector).ConfigureAwait(false);
        WriteCore(sector, data.Span);
    }

    protected override void FlushCore()
    {
        if (FailFlush) throw new BlockDeviceException(Name, 0, "injected flush error");
    }

    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        if (FlushGate is { } gate) await gate().ConfigureAwait(false);
        FlushCore();
    }

    protected override void ExtendCore(long sectorCount)
    {
        lock (_lock) Array.Resize(ref _data, (int)(sectorCount * SectorSize));
    }
}

