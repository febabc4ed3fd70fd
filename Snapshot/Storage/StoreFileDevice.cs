using Journal.Storage;
using Microsoft.Win32.SafeHandles;

namespace Snapshot.Storage;

/// <summary>
/// A file-backed block device for the store's files (origin, COW files, superblock, log): positional I/O through
/// <see cref="RandomAccess"/>; flush is fsync of the file data and size; growth writes zeros (never sparse).
/// </summary>
internal sealed class StoreFileDevice : BlockDevice
{
    private readonly SafeFileHandle _handle;
    private readonly string _path;
    private long _sectors;

    private StoreFileDevice(SafeFileHandle handle, string path, long sectors)
    {
        _handle = handle;
        _path = path;
        _sectors = sectors;
    }

    public static StoreFileDevice Create(string path, long sectors)
    {
        SafeFileHandle h;
        try
        {
            h = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, FileOptions.None);
        }
        catch (IOException e) when (File.Exists(path))
        {
            throw new BlockDeviceException(path, 0, "file already exists", e);
        }
        var d = new StoreFileDevice(h, path, 0);
        try
        {
            d.ExtendCore(sectors);
            d.FlushCore();
        }
        catch
        {
            d.Dispose();
            throw;
        }
        return d;
    }

    public static StoreFileDevice Open(string path)
    {
        SafeFileHandle h;
        try
        {
            h = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read, FileOptions.None);
        }
        catch (FileNotFoundException e)
        {
            throw new BlockDeviceException(path, 0, "file not found", e);
        }
        long len = RandomAccess.GetLength(h);
        if (len % SectorSize != 0)
        {
            h.Dispose();
            throw new BlockDeviceException(path, 0, $"file length {len} is not a whole number of {SectorSize}-byte sectors");
        }
        return new StoreFileDevice(h, path, len / SectorSize);
    }

    public override string Name => _path;

    public override long SectorCount => Interlocked.Read(ref _sectors);

    protected override void ReadCore(long sector, Span<byte> buffer)
    {
        int n = RandomAccess.Read(_handle, buffer, sector * SectorSize);
        if (n < buffer.Length) buffer[n..].Clear();
    }

    protected override void WriteCore(long sector, ReadOnlySpan<byte> data) => RandomAccess.Write(_handle, data, sector * SectorSize);

    protected override async ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int n = await RandomAccess.ReadAsync(_handle, buffer, sector * SectorSize, cancellationToken).ConfigureAwait(false);
        if (n < buffer.Length) buffer.Span[n..].Clear();
    }

    protected override ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken) =>
        RandomAccess.WriteAsync(_handle, data, sector * SectorSize, cancellationToken);

    protected override void FlushCore() => RandomAccess.FlushToDisk(_handle);

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        // fsync blocks; run it off the caller's thread so concurrent writers keep issuing I/O meanwhile.
        return new ValueTask(Task.Run(() => RandomAccess.FlushToDisk(_handle), cancellationToken));
    }

    protected override void ExtendCore(long sectorCount)
    {
        long from = SectorCount;
        var zeros = new byte[Math.Min(1 << 20, (sectorCount - from) * SectorSize)];
        for (long s = from; s < sectorCount;)
        {
            int n = (int)Math.Min(zeros.Length / SectorSize, sectorCount - s);
            RandomAccess.Write(_handle, zeros.AsSpan(0, n * SectorSize), s * SectorSize);
            s += n;
        }
        Interlocked.Exchange(ref _sectors, sectorCount);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _handle.Dispose();
    }
}
