using Journal.Storage;

namespace Journal.Testing;

/// <summary>
/// Passes every operation to an inner device and records each completed write (sector and a copy of the data),
/// growth and flush in a <see cref="WriteLog"/>, which several recording devices may share (one global order
/// across, e.g., an origin, its COW files and a journal log). Like dm-log-writes.
/// </summary>
/// <remarks>
/// The inner device's content is captured when recording begins (the device's initial image in the log). A write is
/// recorded after the inner write returns; a flush records, when it returns, the log position at which it was
/// issued, so writes that raced with it are not counted as made durable by it. Failed operations are not recorded.
/// Reads are passed through unrecorded.
/// <para>Devices created with <c>sharesFlushes</c> model files on one file system that share device flushes
/// (<see cref="BlockDevice.CanFlushThrough"/>, <see cref="WriteBack"/>): a <see cref="WriteBack"/> is recorded, and
/// the log's crash model lets a later flush of any sharing device make it durable. Like a file, such a device may
/// ride only when it has not grown since its own last flush completed (its flush must have begun after the growth).</para>
/// </remarks>
public sealed class RecordingBlockDevice : BlockDevice
{
    private readonly bool _leaveOpen;
    private readonly string _name;
    private readonly bool _sharesFlushes;
    // Growths so far (1 at creation, as for a file: nothing is known to be durable before the first own flush), and
    // the count an own flush read before it began, once it returned (only raised): the device may ride only when the
    // two are equal.
    private long _growth = 1, _flushedGrowth;
    // The size this device shows: published only once a growth is done, logged and counted, so no write into new
    // sectors is logged before the growth, and no flush can read the new count before the growth is in the log.
    private long _sectors;

    /// <summary>
    /// Wraps <paramref name="inner"/>, reads its whole content as the initial image and registers it in
    /// <paramref name="log"/> under <paramref name="name"/> (default: the inner device's name).
    /// </summary>
    /// <param name="inner">The device to pass operations to.</param>
    /// <param name="log">The log to record into (may be shared with other recording devices).</param>
    /// <param name="name">The name in the log and in error messages.</param>
    /// <param name="leaveOpen">Do not dispose <paramref name="inner"/> with this device.</param>
    /// <param name="sharesFlushes">Share device flushes with the log's other devices created with it (see the remarks).</param>
    public RecordingBlockDevice(BlockDevice inner, WriteLog log, string? name = null, bool leaveOpen = false, bool sharesFlushes = false)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(log);
        Inner = inner;
        Log = log;
        _name = name ?? inner.Name;
        _leaveOpen = leaveOpen;
        _sharesFlushes = sharesFlushes;

        var initial = new byte[checked((int)inner.Length)];
        const int Step = 1 << 20;
        for (int offset = 0; offset < initial.Length; offset += Step)
            inner.Read(offset >> SectorShift, initial.AsSpan(offset, Math.Min(Step, initial.Length - offset)));
        DeviceId = log.Register(_name, initial, sharesFlushes);
        _sectors = inner.SectorCount;
    }

    /// <summary>The wrapped device.</summary>
    public BlockDevice Inner { get; }

    /// <summary>The log this device records into.</summary>
    public WriteLog Log { get; }

    /// <summary>This device's id in <see cref="Log"/>.</summary>
    public int DeviceId { get; }

    /// <inheritdoc/>
    public override string Name => _name;

    /// <inheritdoc/>
    public override long SectorCount => Volatile.Read(ref _sectors);

    /// <inheritdoc/>
    public override bool IsReadOnly => Inner.IsReadOnly;

    /// <inheritdoc/>
    protected override void ReadCore(long sector, Span<byte> buffer) => Inner.Read(sector, buffer);

    /// <inheritdoc/>
    protected override ValueTask ReadCoreAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken) =>
        Inner.ReadAsync(sector, buffer, cancellationToken);

    /// <inheritdoc/>
    protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
    {
        byte[] copy = data.ToArray();
        Inner.Write(sector, copy);
        Log.RecordWrite(DeviceId, sector, copy);
    }

    /// <inheritdoc/>
    protected override async ValueTask WriteCoreAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        byte[] copy = data.ToArray();
        await Inner.WriteAsync(sector, copy, cancellationToken).ConfigureAwait(false);
        Log.RecordWrite(DeviceId, sector, copy);
    }

    /// <inheritdoc/>
    protected override void FlushCore() => FlushAsCarrierCore();

    /// <summary>
    /// The inner flush, recorded; it carries other sharing devices' write-backs (in the log's crash model, and as its
    /// result) only when this device qualified itself as it began: sharing, with no growth its own flushes had not
    /// covered.
    /// </summary>
    protected override bool FlushAsCarrierCore()
    {
        long begun = BeginFlush();
        long growth = Interlocked.Read(ref _growth);
        bool carries = _sharesFlushes && !IsReadOnly && Interlocked.Read(ref _flushedGrowth) == growth;
        int issuedAt = Log.Count;
        Inner.Flush();
        Log.RecordFlush(DeviceId, issuedAt, carries);
        Flushed(growth);
        if (carries) Carried(begun);
        return carries;
    }

    /// <inheritdoc/>
    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        long begun = BeginFlush();
        long growth = Interlocked.Read(ref _growth);
        // It carries other devices' write-backs only when it qualifies itself as it begins (no uncovered growth).
        bool carries = _sharesFlushes && Interlocked.Read(ref _flushedGrowth) == growth;
        int issuedAt = Log.Count;
        await Inner.FlushAsync(cancellationToken).ConfigureAwait(false);
        Log.RecordFlush(DeviceId, issuedAt, carries);
        Flushed(growth);
        if (carries) Carried(begun);
    }

    private void Flushed(long growth) => RaiseTo(ref _flushedGrowth, growth);

    /// <summary>Raises <paramref name="field"/> to <paramref name="value"/> unless it is already at least that (lock-free).</summary>
    private static void RaiseTo(ref long field, long value)
    {
        long seen = Interlocked.Read(ref field);
        while (value > seen)
        {
            long was = Interlocked.CompareExchange(ref field, value, seen);
            if (was == seen) break;
            seen = was;
        }
    }

    /// <summary>
    /// True when both devices share flushes in the same log and this one has not grown since its own last flush.
    /// </summary>
    public override bool CanFlushThrough(BlockDevice carrier)
    {
        ArgumentNullException.ThrowIfNull(carrier);
        return _sharesFlushes && carrier is RecordingBlockDevice r && r._sharesFlushes && ReferenceEquals(r.Log, Log)
            && !IsReadOnly && Interlocked.Read(ref _flushedGrowth) == Interlocked.Read(ref _growth);
    }

    /// <inheritdoc/>
    public override void StartWriteBack()
    {
        ThrowIfDisposed();
        if (_sharesFlushes) Inner.StartWriteBack();
    }

    /// <summary>
    /// For a device sharing flushes: the inner device's write-back, then a <see cref="WriteLogEntryKind.WriteBack"/>
    /// entry. Otherwise a full flush (recorded as one).
    /// </summary>
    public override void WriteBack()
    {
        if (!_sharesFlushes)
        {
            Flush();
            return;
        }
        ThrowIfDisposed();
        int issuedAt = Log.Count;
        Inner.WriteBack();
        Log.RecordWriteBack(DeviceId, issuedAt);
    }

    /// <inheritdoc/>
    protected override void ExtendCore(long sectorCount)
    {
        Inner.Extend(sectorCount);
        long now = Inner.SectorCount;
        Log.RecordExtend(DeviceId, now);
        // As FileBlockDevice: counted once the growth is done (here: logged), before the new size is published.
        Interlocked.Increment(ref _growth);
        RaiseTo(ref _sectors, now);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing && !_leaveOpen) Inner.Dispose();
    }
}
