using Journal.Storage;

namespace Journal.Testing;

/// <summary>
/// A plain in-memory block device: one byte array, no crash model (every write is at once "durable"; a flush only
/// counts). Used to mount rebuilt crash images and as the inner device of wrappers in tests.
/// </summary>
/// <remarks>
/// Locking: <c>_lock</c> protects the identity of <c>_data</c> (the array is replaced on growth). Reads and writes
/// take it shared, so disjoint ranges proceed in parallel (overlapping ones see whatever the CPU interleaving
/// gives, as on real hardware); <see cref="BlockDevice.Extend"/> takes it exclusive while it copies into a bigger array, so
/// no write can land in the old array after the copy. Nothing blocks or allocates under the shared lock.
/// Size is limited to <see cref="Array.MaxLength"/> bytes.
/// </remarks>
public sealed class MemoryBlockDevice : BlockDevice
{
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private readonly string _name;
    private byte[] _data;

    /// <summary>Creates a zero-filled device of <paramref name="sectorCount"/> sectors.</summary>
    public MemoryBlockDevice(long sectorCount, string name = "memory")
    {
        ArgumentNullException.ThrowIfNull(name);
        _name = name;
        _data = new byte[CheckedBytes(name, sectorCount)];
    }

    private MemoryBlockDevice(byte[] adopted, string name)
    {
        _name = name;
        _data = adopted;
    }

    /// <summary>Creates a device holding a copy of <paramref name="image"/> (a whole number of sectors).</summary>
    public static MemoryBlockDevice FromImage(ReadOnlySpan<byte> image, string name = "memory")
    {
        ArgumentNullException.ThrowIfNull(name);
        CheckImage(image.Length, name);
        return new MemoryBlockDevice(image.ToArray(), name);
    }

    /// <summary>
    /// Creates a device whose storage is <paramref name="image"/> itself, not a copy: writes change the array (until a
    /// growth replaces it with a bigger one). Lets a test reuse one buffer across many rebuilt images.
    /// </summary>
    public static MemoryBlockDevice Wrap(byte[] image, string name = "memory")
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(name);
        CheckImage(image.Length, name);
        return new MemoryBlockDevice(image, name);
    }

    private static void CheckImage(int length, string name)
    {
        if ((length & (SectorSize - 1)) != 0)
            throw new ArgumentException($"{name}: image length {length} is not a whole number of {SectorSize}-byte sectors.");
    }

    private static int CheckedBytes(string name, long sectorCount)
    {
        if (sectorCount < 0 || sectorCount > Array.MaxLength >> SectorShift)
            throw new BlockDeviceException(name, sectorCount,
                $"size of {sectorCount} sectors is outside what a memory device holds (0..{Array.MaxLength >> SectorShift})");
        return (int)(sectorCount << SectorShift);
    }

    /// <inheritdoc/>
    public override string Name => _name;

    /// <inheritdoc/>
    public override long SectorCount => Volatile.Read(ref _data).Length >> SectorShift;

    /// <summary>A copy of the whole device.</summary>
    public byte[] ToArray()
    {
        ThrowIfDisposed();
        _lock.EnterReadLock();
        try { return ImageCopy.Of(_data); }
        finally { _lock.ExitReadLock(); }
    }

    /// <inheritdoc/>
    protected override void ReadCore(long sector, Span<byte> buffer)
    {
        _lock.EnterReadLock();
        try { _data.AsSpan((int)(sector << SectorShift), buffer.Length).CopyTo(buffer); }
        finally { _lock.ExitReadLock(); }
    }

    /// <inheritdoc/>
    protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
    {
        _lock.EnterReadLock();
        try { data.CopyTo(_data.AsSpan((int)(sector << SectorShift))); }
        finally { _lock.ExitReadLock(); }
    }

    /// <inheritdoc/>
    protected override void FlushCore() { }

    /// <inheritdoc/>
    protected override void ExtendCore(long sectorCount)
    {
        int bytes = CheckedBytes(_name, sectorCount);
        byte[] bigger = new byte[bytes];            // allocated before taking the lock
        _lock.EnterWriteLock();
        try
        {
            if (bytes <= _data.Length) return;
            _data.CopyTo(bigger, 0);
            Volatile.Write(ref _data, bigger);
        }
        finally { _lock.ExitWriteLock(); }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _lock.Dispose();
    }
}
