using System.Runtime.CompilerServices;

namespace Journal.Storage;

/// <summary>
/// A sector-addressed block device: the only way the journal and the snapshot store touch storage.
/// Every crash test substitutes a device that records, drops, reorders or tears writes.
/// </summary>
/// <remarks>
/// Contract shared by all devices:
/// <list type="bullet">
/// <item>Offsets are in 512-byte sectors; buffer lengths are whole sectors.</item>
/// <item>A write that has returned is visible to later reads, but is durable only after a later
/// <see cref="Flush"/> has returned. A crash may lose, reorder or tear (at sector granularity) any write
/// not yet covered by a flush; it never loses a flushed write.</item>
/// <item>Reads and writes of disjoint ranges may run concurrently from many threads.</item>
/// <item>I/O errors surface as <see cref="BlockDeviceException"/> naming the device and the sector.</item>
/// </list>
/// The public methods validate arguments and count operations, then call the <c>*Core</c> methods.
/// </remarks>
public abstract class BlockDevice : IDisposable
{
    /// <summary>Bytes in one sector.</summary>
    public const int SectorSize = 512;

    /// <summary>log2(<see cref="SectorSize"/>).</summary>
    public const int SectorShift = 9;

    [ThreadStatic]
    private static bool t_readsMustNotWait;

    /// <summary>
    /// Per thread: true while this thread takes work for others and must not wait for a device, such as an NBD
    /// connection's reader running a request's first steps inline. An asynchronous read started on such a thread reads
    /// what the page cache holds at once and, where the data must come from the device, goes on on a thread-pool thread
    /// instead of blocking this one (<see cref="FileBlockDevice"/>; other devices never block on a read); callers that
    /// are about to wait for a device in another way (a snapshot store growing a COW file) move to a pool thread
    /// first too. Off (the default), a read that misses the cache blocks the calling thread, which costs one sleep
    /// instead of a hand-off to another thread: better where many callers already run in parallel on pool threads.
    /// </summary>
    /// <remarks>Set it around the inline part and clear it after (in a <c>finally</c>); it is not carried across awaits.</remarks>
    public static bool ReadsMustNotWait
    {
        get => t_readsMustNotWait;
        set => t_readsMustNotWait = value;
    }

    private long _reads, _writes, _bytesRead, _bytesWritten, _flushes;
    private int _disposed;

    /// <summary>A name for error messages: the file path for file devices, a label otherwise.</summary>
    public abstract string Name { get; }

    /// <summary>Current size in sectors.</summary>
    public abstract long SectorCount { get; }

    /// <summary>Current size in bytes.</summary>
    public long Length => SectorCount << SectorShift;

    /// <summary>True when writes are refused.</summary>
    public virtual bool IsReadOnly => false;

    /// <summary>
    /// Reserves space for the device to grow to <paramref name="sectors"/> sectors without writing it or changing
    /// <see cref="SectorCount"/>: once this returns true, writes and growth within that size do not fail for lack of
    /// space. Returns false when the device cannot reserve (memory devices, file systems without fallocate).
    /// </summary>
    /// <exception cref="DeviceFullException">There is not that much space.</exception>
    public virtual bool Reserve(long sectors) => false;

    /// <summary>
    /// Gives the device's storage back (its size stays; it then reads as zeros): for a device whose file was removed
    /// while it is still open, so that its space is freed now rather than when the last handle closes. Returns false
    /// when the device cannot (memory devices, file systems without hole punching).
    /// </summary>
    public virtual bool DiscardAll() => false;

    /// <summary>Counters of the operations issued through this device object.</summary>
    public DeviceCounters Counters => new(
        Interlocked.Read(ref _reads), Interlocked.Read(ref _bytesRead),
        Interlocked.Read(ref _writes), Interlocked.Read(ref _bytesWritten),
        Interlocked.Read(ref _flushes));

    /// <summary>Reads whole sectors starting at <paramref name="sector"/>.</summary>
    public void Read(long sector, Span<byte> buffer)
    {
        CheckRange(sector, buffer.Length);
        ReadCore(sector, buffer);
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _bytesRead, buffer.Length);
    }

    /// <summary>Writes whole sectors starting at <paramref name="sector"/>. Not durable until <see cref="Flush"/>.</summary>
    public void Write(long sector, ReadOnlySpan<byte> data)
    {
        CheckWritable();
        CheckRange(sector, data.Length);
        WriteCore(sector, data);
        Interlocked.Increment(ref _writes);
        Interlocked.Add(ref _bytesWritten, data.Length);
    }

    /// <summary>Makes every write that returned before this call durable.</summary>
    public void Flush()
    {
        ThrowIfDisposed();
        FlushCore();
        Interlocked.Increment(ref _flushes);
    }

    /// <summary>
    /// A <see cref="Flush"/> that also says whether it carried other devices' write-backs: true when, as it began, this
    /// device qualified as a carrier (<c>CanFlushThrough(this)</c>), so every <see cref="WriteBack"/> of a device that
    /// <see cref="CanFlushThrough"/> this one, completed before this call, is durable once it returns. False by default.
    /// A carrier chosen earlier may have stopped qualifying (it grew); its caller then flushes the riders themselves.
    /// </summary>
    public bool FlushAsCarrier()
    {
        ThrowIfDisposed();
        bool carried = FlushAsCarrierCore();
        Interlocked.Increment(ref _flushes);
        return carried;
    }

    /// <summary>Device-specific <see cref="FlushAsCarrier"/>: by default a plain flush that carries nothing.</summary>
    protected virtual bool FlushAsCarrierCore()
    {
        FlushCore();
        return false;
    }

    /// <summary>Asynchronous <see cref="Read"/>.</summary>
    public async ValueTask ReadAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(sector, buffer.Length);
        await ReadCoreAsync(sector, buffer, cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _bytesRead, buffer.Length);
    }

    /// <summary>Asynchronous <see cref="Write"/>.</summary>
    public async ValueTask WriteAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(sector, data.Length);
        await WriteCoreAsync(sector, data, cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _writes);
        Interlocked.Add(ref _bytesWritten, data.Length);
    }

    /// <summary>Asynchronous <see cref="Flush"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        await FlushCoreAsync(cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _flushes);
    }

    /// <summary>
    /// Flushes of this device begun so far (a count that only grows). Read it after the write-backs a caller wants
    /// covered have returned, and pass it to <see cref="HasCarriedSince"/> once a flush it did not issue itself (a
    /// journal's log force) has completed. 0 for a device that never shares a flush.
    /// </summary>
    public virtual long FlushesBegun => Interlocked.Read(ref _flushesBegun);

    /// <summary>
    /// True when a flush of this device that began after <see cref="FlushesBegun"/> read <paramref name="begun"/> has
    /// completed and carried (it qualified as a carrier as it began, see <see cref="FlushAsCarrier"/>): every
    /// <see cref="WriteBack"/> of a device that <see cref="CanFlushThrough"/> this one, completed before that read, is
    /// durable. False by default.
    /// </summary>
    public virtual bool HasCarriedSince(long begun) => Interlocked.Read(ref _carriedBegun) > begun;

    /// <summary>For a device that shares flushes: numbers a flush as it begins (before it decides whether it carries).</summary>
    protected long BeginFlush() => Interlocked.Increment(ref _flushesBegun);

    /// <summary>For a device that shares flushes: the flush numbered <paramref name="begun"/> completed and carried.</summary>
    protected void Carried(long begun)
    {
        long seen = Interlocked.Read(ref _carriedBegun);
        while (begun > seen)
        {
            long was = Interlocked.CompareExchange(ref _carriedBegun, begun, seen);
            if (was == seen) break;
            seen = was;
        }
    }

    private long _flushesBegun, _carriedBegun;

    /// <summary>
    /// True when a <see cref="Flush"/> of <paramref name="carrier"/> makes durable every write of this device that a
    /// <see cref="WriteBack"/> completed before that flush began: both sit on one storage device whose flush covers
    /// whatever it holds, and a write of this device changes nothing but its data (no growth since this device's own
    /// last flush, no block still to allocate). False by default. It can turn false at any time (growth); a caller
    /// checks it after the writes it wants covered have returned. <c>carrier.CanFlushThrough(carrier)</c> says whether
    /// the carrier qualifies itself.
    /// </summary>
    public virtual bool CanFlushThrough(BlockDevice carrier)
    {
        ArgumentNullException.ThrowIfNull(carrier);
        return false;
    }

    /// <summary>
    /// Starts sending this device's written data to the storage device without waiting for it, so that several
    /// devices' <see cref="WriteBack"/>s run in parallel. Makes nothing durable. Does nothing by default.
    /// </summary>
    public virtual void StartWriteBack() => ThrowIfDisposed();

    /// <summary>
    /// Sends every write that returned before this call to the storage device and waits for it, without flushing the
    /// storage device's cache: the writes are durable after a later <see cref="Flush"/> of this device or of a device
    /// this one <see cref="CanFlushThrough"/>. By default (a device that cannot share a flush) it is a full
    /// <see cref="Flush"/>.
    /// </summary>
    /// <exception cref="BlockDeviceException">The write-back failed; the writes it covers are not durable.</exception>
    public virtual void WriteBack() => Flush();

    /// <summary>
    /// Grows the device to at least <paramref name="sectorCount"/> sectors. The new sectors read as zeros and are
    /// really written (not sparse, not merely reserved); the new size is durable after the next <see cref="Flush"/>.
    /// Never shrinks.
    /// </summary>
    public void Extend(long sectorCount)
    {
        CheckWritable();
        if (sectorCount > SectorCount) ExtendCore(sectorCount);
    }

    /// <summary>Device-specific read.</summary>
    protected abstract void ReadCore(long sector, Span<byte> buffer);

    /// <summary>Device-specific write.</summary>
    protected abstract void WriteCore(long sector, ReadOnlySpan<byte> data);

    /// <summary>Device-specific flush.</summary>
    protected abstract void FlushCore();

    /// <summary>Device-specific growth (zero-filled, written).</summary>
    protected abstract void ExtendCore(long sectorCount);

    /// <summary>Device-specific asynchronous read; runs the synchronous one by default.</summary>
    protected virtual ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ReadCore(sector, buffer.Span);
        return ValueTask.CompletedTask;
    }

    /// <summary>Device-specific asynchronous write; runs the synchronous one by default.</summary>
    protected virtual ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        WriteCore(sector, data.Span);
        return ValueTask.CompletedTask;
    }

    /// <summary>Device-specific asynchronous flush; runs the synchronous one by default.</summary>
    protected virtual ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        FlushCore();
        return ValueTask.CompletedTask;
    }

    /// <summary>Throws <see cref="ArgumentException"/> for a misaligned buffer, <see cref="BlockDeviceException"/> past the end.</summary>
    protected void CheckRange(long sector, int length)
    {
        ThrowIfDisposed();
        if ((length & (SectorSize - 1)) != 0)
            throw new ArgumentException($"{Name}: I/O length {length} is not a whole number of {SectorSize}-byte sectors.");
        if (sector < 0 || sector + (length >> SectorShift) > SectorCount)
            throw new BlockDeviceException(Name, sector,
                $"I/O of {length >> SectorShift} sectors at sector {sector} is beyond the end of the device ({SectorCount} sectors)");
    }

    private void CheckWritable()
    {
        ThrowIfDisposed();
        if (IsReadOnly) throw new BlockDeviceException(Name, 0, "device is read-only");
    }

    /// <summary>Throws <see cref="ObjectDisposedException"/> after <see cref="Dispose()"/>.</summary>
    protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Releases the device. Unflushed writes are not made durable.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources.</summary>
    protected virtual void Dispose(bool disposing) { }

    /// <inheritdoc/>
    public override string ToString() => $"{GetType().Name}({Name}, {SectorCount} sectors)";
}

/// <summary>Operation counts of a <see cref="BlockDevice"/>.</summary>
/// <param name="Reads">Read calls.</param>
/// <param name="BytesRead">Bytes read.</param>
/// <param name="Writes">Write calls.</param>
/// <param name="BytesWritten">Bytes written.</param>
/// <param name="Flushes">Flush calls.</param>
public readonly record struct DeviceCounters(long Reads, long BytesRead, long Writes, long BytesWritten, long Flushes);
