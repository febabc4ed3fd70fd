using Journal.Storage;

namespace Journal.Tests.Log;

/// <summary>
/// A plain in-memory device for the log tests. Optionally records every write and flush in order so a test can
/// rebuild the image as of any point (see <see cref="RecordedImage"/>). Writes are applied at once; a write can be
/// held back by <see cref="WriteGate"/> to make completions arrive out of order.
/// </summary>
internal sealed class TestMemoryDevice : BlockDevice
{
    private readonly object _lock = new();
    private byte[] _data;

    public TestMemoryDevice(long sectors, string name = "mem") { _data = new byte[sectors * SectorSize]; Name = name; }

    public TestMemoryDevice(byte[] image, string name = "mem") { _data = image; Name = name; }

    public override string Name { get; }

    public override long SectorCount { get { lock (_lock) return _data.Length / SectorSize; } }

    /// <summary>When set, every write and flush is appended here (in the order they reach the device).</summary>
    public List<DeviceOp>? Recording { get; set; }

    /// <summary>When set, awaited before each asynchronous write is applied (receives the sector).</summary>
    public Func<long, Task>? WriteGate { get; set; }

    /// <summary>When set, thrown by writes to sectors it returns true for.</summary>
    public Func<long, bool>? FailWrite { get; set; }

    /// <summary>When set, awaited before each asynchronous flush takes effect.</summary>
    public Func<Task>? FlushGate { get; set; }

    /// <summary>When true, flushes throw.</summary>
    public bool FailFlush { get; set; }

    public byte[] Image() { lock (_lock) return (byte[])_data.Clone(); }

    /// <summary>Operations recorded so far.</summary>
    public int RecordingCount { get { lock (_lock) return Recording?.Count ?? 0; } }

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
            Recording?.Add(new DeviceOp(false, sector, data.ToArray()));
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
        lock (_lock) Recording?.Add(new DeviceOp(true, 0, null));
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

/// <summary>One recorded device operation: a write (sector and data) or a flush.</summary>
internal sealed record DeviceOp(bool IsFlush, long Sector, byte[]? Data);

/// <summary>Rebuilds device images from a base image and a recorded operation list.</summary>
internal static class RecordedImage
{
    /// <summary>
    /// The image after the first <paramref name="count"/> operations, where each sector written after the last flush
    /// among them survives only if <paramref name="keepUnflushed"/> says so (null: all survive). Flushed writes always survive.
    /// </summary>
    public static byte[] Build(byte[] baseImage, IReadOnlyList<DeviceOp> ops, int count, Func<int, long, bool>? keepUnflushed = null)
    {
        var img = (byte[])baseImage.Clone();
        int lastFlush = -1;
        for (int i = 0; i < count; i++) if (ops[i].IsFlush) lastFlush = i;
        for (int i = 0; i < count; i++)
        {
            var op = ops[i];
            if (op.IsFlush) continue;
            int sectors = op.Data!.Length / BlockDevice.SectorSize;
            for (int s = 0; s < sectors; s++)
            {
                if (i > lastFlush && keepUnflushed is not null && !keepUnflushed(i, op.Sector + s)) continue;
                op.Data.AsSpan(s * BlockDevice.SectorSize, BlockDevice.SectorSize)
                    .CopyTo(img.AsSpan((int)((op.Sector + s) * BlockDevice.SectorSize)));
            }
        }
        return img;
    }
}
