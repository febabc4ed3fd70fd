using System.Buffers.Binary;
using System.Globalization;
using Journal.Format;
using Journal.Memory;
using Journal.Recovery;
using Journal.Storage;

namespace Journal.Log;

/// <summary>
/// Writes the on-disk log: a ring of in-core log buffers (iclogs) that ops are copied into, each written as one record,
/// with group-committed device flushes, in-order completion, wrap-around and tail protection.
/// </summary>
/// <remarks>
/// <para><b>File format written.</b> The log region is a circle of 512-byte blocks holding records back to back
/// (<c>docs/format.md</c> has every byte). A record is a <see cref="RecordHeader"/> block followed by payload blocks;
/// the payload is a sequence of ops (<see cref="OpHeader"/> + data). The first word of every payload block is replaced
/// by the record's cycle on disk and kept in the header, so every block says which pass over the log wrote it. A record
/// never crosses the end of the log: near the end the buffer is shrunk to the blocks left, and when a single block is
/// left it is filled by a one-block pad record; the next record starts at block 0 with the cycle one higher.
/// <see cref="Format(LogRegion)"/> writes zeros over the whole region and one unmount record at 1:0.</para>
///
/// <para><b>Life of a buffer.</b> Free → Active (ops copied in) → Syncing (sealed: header fields fixed under the lock;
/// stamped, checksummed and written outside it) → Written → Flushing (covered by a running device flush) → Durable →
/// Free. Buffers are activated in ring order and become free in ring (= LSN) order, so completions are delivered in
/// LSN order even when writes finish out of order. Every written buffer is flushed before its buffer is reused, so at
/// most <see cref="LogWriterOptions.IclogCount"/> records are ever written but not durable; that bounds the window
/// recovery searches for holes (<see cref="LogFormat.InFlightWindowBlocks"/>).</para>
///
/// <para><b>Buffer memory.</b> A ring slot holds no memory of its own: a buffer is attached when the slot is activated
/// and goes back to the writer's free list when the slot becomes free. A writer opened on its own allocates all
/// <see cref="LogWriterOptions.IclogCount"/> buffers when it opens. A writer opened by a journal allocates only
/// <see cref="LogWriterOptions.ReservedBufferCount"/> (its reserve, enough for one buffer being filled while another is
/// on its way to disk) and rents the others from the journal's budgeted pool when a write finds no free buffer; they
/// go back to the pool when the writer falls idle. Renting runs on a task of its own (the allocator may fail or
/// stall) while the writer waits for whichever comes first, the rented buffer or one of its own coming back from
/// the disk, so writes (and the checkpoint push above them) only ever use memory the writer holds; a pool that
/// cannot serve costs throughput, never progress.</para>
///
/// <para><b>Group commit.</b> One flush runs at a time. Every buffer whose write finished before a flush starts is
/// covered by it; buffers that finish during a flush are picked up by the next one. Forces never issue flushes of
/// their own: they wait for the durable LSN to pass theirs, so concurrent forces share flushes.</para>
///
/// <para><b>Locking.</b> One lock, <c>_lock</c>, protects all in-core state: the buffer states and the contents of the
/// active buffer, the head, tail and durable positions, the waiter lists, the flush state and the statistics.
/// Every public method takes it exclusively, briefly. Copying op data into the active buffer happens under it (a
/// bounded memory copy into a preallocated buffer, never an allocation of buffer memory). While holding it the code
/// never does device I/O, never flushes, never awaits and never runs a waiter's continuation (every completion source
/// is created with <see cref="TaskCreationOptions.RunContinuationsAsynchronously"/>). Sealed buffers are submitted
/// after the lock is released, and always before the submitting thread waits for anything, so a waiter never holds
/// back the I/O it waits for.</para>
/// </remarks>
internal sealed class LogWriter : ILogSink, IDisposable, IAsyncDisposable
{
    private readonly LogRegion _region;
    private readonly BlockDevice _device;
    private readonly uint _n;
    private readonly LogWriterOptions _options;
    private readonly Iclog[] _ring;
    private readonly int _bufferBytes;            // header block + payload of one buffer
    private readonly int _reservedBuffers;        // held from open to close
    private readonly BoundedBufferPool? _pool;    // where the other buffers are rented from (null: all are reserved)

    // ---- Everything below is protected by _lock (see the remarks). ----
    private readonly object _lock = new();
    private long _headAbs;          // absolute block of the next record to be activated (cycle * _n + block)
    private long _tailAbs;          // absolute block of the tail
    private Lsn _durableLsn;        // LSN of the last durable record
    private Lsn _lastSealedLsn;     // LSN of the last sealed record
    private uint _prevBlock;        // header block of the last sealed record
    private int _activeIndex = -1;  // ring index of the active buffer, or -1
    private int _nextIndex;         // ring index activated next
    private int _oldestIndex;       // ring index of the oldest buffer not yet free (== _nextIndex when none)
    private int _busyCount;         // buffers not free
    private bool _flushRunning;
    private int _ioInFlight;        // sync tasks running (write and possibly the flush loop)
    private TaskCompletionSource? _ioIdle;
    private Exception? _failure;
    private bool _disposed;
    private uint _nextTid;
    private readonly List<(Lsn Lsn, TaskCompletionSource Done)> _forceWaiters = new();
    private TaskCompletionSource? _bufferFreed;   // completed when a buffer becomes free
    private TaskCompletionSource? _tailMoved;     // completed when the tail moves
    private readonly byte[][] _freeBuffers;       // buffers held and not attached to a slot: [0, _freeCount)
    private int _freeCount;
    private int _heldBuffers;                     // reserved + rented and not yet given back
    private bool _renting;                  // a RentBufferAsync is running (one at a time)
    private long _bufferMemoryWaits, _buffersRented, _buffersReturned, _rentFailures;
    private long _records, _pads, _ops, _payloadBytes, _bytesWritten, _flushes, _forces, _forcesNoIo, _forceWaits,
        _bufferWaits, _spaceWaits, _tids;

    private LogWriter(LogRegion region, LogWriterOptions options, RecoveryResult recovered, BoundedBufferPool? pool)
    {
        _region = region;
        _device = region.Device;
        _n = region.BlockCount;
        _options = options;
        _ring = new Iclog[options.IclogCount];
        for (int i = 0; i < _ring.Length; i++) _ring[i] = new Iclog(i);
        _bufferBytes = options.BufferBytes;
        _pool = pool;
        _reservedBuffers = pool is null ? options.IclogCount : Math.Min(options.ReservedBufferCount, options.IclogCount);
        _freeBuffers = new byte[options.IclogCount][];
        for (int i = 0; i < _reservedBuffers; i++) _freeBuffers[i] = new byte[_bufferBytes];
        _freeCount = _heldBuffers = _reservedBuffers;
        _headAbs = Abs(recovered.NextLsn);
        _tailAbs = Abs(recovered.TailLsn);
        _durableLsn = recovered.HeadLsn;
        _lastSealedLsn = recovered.HeadLsn;
        _prevBlock = recovered.HeadLsn.Block;
        _nextTid = recovered.NextTransactionId;
    }

    /// <summary>
    /// Prepares <paramref name="region"/> as an empty log: writes zeros over every block (really written, not sparse),
    /// then an unmount record at LSN 1:0, and flushes. Whatever the region held is lost.
    /// </summary>
    public static void Format(LogRegion region) => Format(region, 1);

    /// <summary>
    /// <see cref="Format(LogRegion)"/> starting at cycle <paramref name="firstCycle"/>: every block carries the cycle
    /// before it as its stamp (zero blocks for cycle 1) and the unmount record is at LSN <c>firstCycle:0</c>. Resetting
    /// a log whose items' home copies carry LSNs of an earlier log uses a cycle above all of them, so that no new
    /// checkpoint is taken for one a home copy already reflects.
    /// </summary>
    public static void Format(LogRegion region, uint firstCycle)
    {
        region.Validate();
        if (firstCycle is 0 or > LogFormat.MaxCycle)
            throw new JournalArgumentException($"{region.Name}: first cycle {firstCycle} is outside 1..{LogFormat.MaxCycle}");
        var dev = region.Device;
        var zeros = new byte[Math.Min(2048, (int)region.BlockCount) * LogFormat.BlockSize];
        for (int i = 0; i < zeros.Length; i += LogFormat.BlockSize)
            BinaryPrimitives.WriteUInt32LittleEndian(zeros.AsSpan(i), firstCycle - 1);
        for (long b = 0; b < region.BlockCount;)
        {
            int n = (int)Math.Min(zeros.Length / LogFormat.BlockSize, region.BlockCount - b);
            dev.Write(region.StartSector + b, zeros.AsSpan(0, n * LogFormat.BlockSize));
            b += n;
        }
        var block = new byte[LogFormat.BlockSize];
        var h = new RecordHeader
        {
            Magic = LogFormat.RecordMagic, Cycle = firstCycle, Version = LogFormat.Version, Kind = RecordKind.Unmount,
            Length = 0, Lsn = new Lsn(firstCycle, 0), TailLsn = new Lsn(firstCycle, 0), OpCount = 0,
            PreviousBlock = LogFormat.NoPreviousBlock, LogBlocks = region.BlockCount,
        };
        RecordCodec.Seal(block, ref h);
        dev.Write(region.StartSector, block);
        dev.Flush();
    }

    /// <summary>
    /// Opens a writer that continues the log after <paramref name="recovered"/> (the result of
    /// <see cref="LogRecovery.Recover"/> on the same region). Before returning it overwrites the blocks just past the
    /// head that a lost write may have left stamped with the current cycle (up to the in-flight window, never past the
    /// tail) with zero blocks carrying the previous cycle, and flushes, so a later crash cannot mistake them for new
    /// records.
    /// </summary>
    public static LogWriter Open(LogRegion region, RecoveryResult recovered, LogWriterOptions? options = null) =>
        Open(region, recovered, options, pool: null);

    /// <summary>
    /// <see cref="Open(LogRegion, RecoveryResult, LogWriterOptions?)"/> for a journal: buffers beyond
    /// <see cref="LogWriterOptions.ReservedBufferCount"/> are rented from <paramref name="pool"/> (see the remarks).
    /// </summary>
    internal static LogWriter Open(LogRegion region, RecoveryResult recovered, LogWriterOptions? options, BoundedBufferPool? pool)
    {
        ArgumentNullException.ThrowIfNull(recovered);
        options ??= LogWriterOptions.Default;
        region.Validate();
        options.Validate(region.BlockCount, region.Name);
        if (recovered.Region != region)
            throw new JournalArgumentException($"{region.Name}: the recovery result is for another log region ({recovered.Region})");
        var w = new LogWriter(region, options, recovered, pool);
        w.ClearStaleBlocks(recovered.StaleEndAbs);
        return w;
    }

    /// <summary>Recovers <paramref name="region"/> (delivering nothing) and opens a writer after it; for logs known to be clean or in tests.</summary>
    public static LogWriter Open(LogRegion region, LogWriterOptions? options = null) =>
        Open(region, LogRecovery.Recover(region), options);

    /// <summary>The log region written.</summary>
    public LogRegion Region => _region;

    /// <summary>The options in force.</summary>
    public LogWriterOptions Options => _options;

    /// <inheritdoc/>
    public uint LogBlocks => _n;

    /// <summary>
    /// The LSN of the record the next op goes into: the record being filled, or the next record when none is.
    /// Forcing it forces everything written so far.
    /// </summary>
    public Lsn Head
    {
        get { lock (_lock) return _activeIndex >= 0 ? _ring[_activeIndex].Lsn : ToLsn(NextRecordAbs()); }
    }

    /// <inheritdoc/>
    public Lsn Tail
    {
        get { lock (_lock) return ToLsn(_tailAbs); }
    }

    /// <inheritdoc/>
    public Lsn DurableLsn
    {
        get { lock (_lock) return _durableLsn; }
    }

    /// <inheritdoc/>
    public long UsedBytes
    {
        get
        {
            lock (_lock)
            {
                long end = _headAbs;
                if (_activeIndex >= 0)
                {
                    var a = _ring[_activeIndex];
                    end = a.StartAbs + 1 + LogFormat.PayloadBlocksFor(a.Used);
                }
                return (end - _tailAbs) << LogFormat.BlockShift;
            }
        }
    }

    /// <summary>True while a buffer is being rented from the pool (tests wait for a stalled rent to finish).</summary>
    internal bool RentRunning
    {
        get { lock (_lock) return _renting; }
    }

    /// <summary>Bytes of log the writer can still fill before it must wait for the tail to move.</summary>
    public long FreeBytes => ((long)_n << LogFormat.BlockShift) - UsedBytes;

    /// <summary>Counts since the writer was opened.</summary>
    public LogWriterStatistics Statistics
    {
        get
        {
            lock (_lock)
                return new(_records, _pads, _ops, _payloadBytes, _bytesWritten, _flushes, _forces, _forcesNoIo,
                    _forceWaits, _bufferWaits, _spaceWaits, _tids,
                    _heldBuffers, _reservedBuffers, _bufferMemoryWaits, _buffersRented, _buffersReturned, _rentFailures);
        }
    }

    /// <summary>
    /// Worst-case log bytes to write one transaction of <paramref name="regions"/> regions totalling
    /// <paramref name="payloadBytes"/> bytes: the start and commit ops, one op header per region and per record
    /// boundary a region may be split at, a header block and a partly filled last block for every record the
    /// transaction may touch (two more than its bytes need, for the records it starts and ends in and for the short
    /// record at the end of the log), and the one-block pad before the wrap.
    /// </summary>
    public long GetReservationBytes(int regions, long payloadBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(regions);
        ArgumentOutOfRangeException.ThrowIfNegative(payloadBytes);
        long opBytes = payloadBytes + (regions + 2L) * OpHeader.Size;
        long perRecord = _options.IclogSize - OpHeader.Size;
        long records = (opBytes + perRecord - 1) / perRecord + 2;
        return opBytes + records * (OpHeader.Size + 2L * LogFormat.BlockSize) + LogFormat.BlockSize;
    }

    /// <inheritdoc/>
    public uint AllocateTransactionId()
    {
        lock (_lock)
        {
            _tids++;
            uint tid = _nextTid++;
            if (_nextTid == 0) _nextTid = 1;
            return tid;
        }
    }

    /// <inheritdoc/>
    public ValueTask<Lsn> WriteAsync(uint tid, IReadOnlyList<ReadOnlyMemory<byte>> regions, bool start, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(regions);
        return FirstLsn(WriteOpsAsync(tid, regions, start, commit: false, cancellationToken));
    }

    /// <inheritdoc/>
    public ValueTask<Lsn> WriteCommitAsync(uint tid, CancellationToken cancellationToken = default) =>
        FirstLsn(WriteOpsAsync(tid, Array.Empty<ReadOnlyMemory<byte>>(), start: false, commit: true, cancellationToken));

    private static async ValueTask<Lsn> FirstLsn(ValueTask<(Lsn First, Lsn Last)> write) => (await write.ConfigureAwait(false)).First;

    /// <summary>
    /// Writes a whole transaction (start op, <paramref name="regions"/>, commit op) and returns the LSN of the record
    /// holding its commit op. Not durable until forced.
    /// </summary>
    public ValueTask<Lsn> WriteTransactionAsync(uint tid, IReadOnlyList<ReadOnlyMemory<byte>> regions, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(regions);
        return LastLsn(WriteOpsAsync(tid, regions, start: true, commit: true, cancellationToken));
    }

    private static async ValueTask<Lsn> LastLsn(ValueTask<(Lsn First, Lsn Last)> write) => (await write.ConfigureAwait(false)).Last;

    /// <summary>
    /// Per-thread list of buffers sealed under the lock and submitted right after it is released (always empty between
    /// uses, never carried across an await), so the write path allocates no list.
    /// </summary>
    [ThreadStatic] private static List<Iclog>? t_toSubmit;

    private List<Iclog> SubmitList()
    {
        var list = t_toSubmit ??= new List<Iclog>(LogWriterOptions.MaxIclogCount + 2);
        if (list.Capacity < _ring.Length + 2) list.Capacity = _ring.Length + 2;
        return list;
    }

    /// <summary>
    /// Copies ops into buffers: the start op (if <paramref name="start"/>), the regions (split at record boundaries),
    /// the commit op (if <paramref name="commit"/>). Returns the LSNs of the records holding the first and the last op.
    /// </summary>
    private async ValueTask<(Lsn First, Lsn Last)> WriteOpsAsync(uint tid, IReadOnlyList<ReadOnlyMemory<byte>> regions, bool start, bool commit, CancellationToken ct)
    {
        var cursor = new OpCursor(start, regions.Count, commit);
        Lsn first = Lsn.Zero, last = Lsn.Zero;
        while (true)
        {
            Task? wait = null;
            bool rent = false;
            // Sized before taking the lock so adding under it never grows it; emptied by Submit before any await.
            var toSubmit = SubmitList();
            try
            {
                lock (_lock)
                {
                    ThrowIfUnusable();
                    while (!cursor.Done)
                    {
                        var ic = ActiveOrActivate(toSubmit, out wait, ref rent);
                        if (ic is null) break;
                        if (!CopyNextOp(ic, tid, regions, ref cursor))
                        {
                            Seal(ic, toSubmit); // not enough room for the next op: this record is complete
                            continue;
                        }
                        if (first.IsZero) first = ic.Lsn;
                        last = ic.Lsn;
                        if (ic.Free < OpHeader.Size + 1) Seal(ic, toSubmit);
                    }
                }
            }
            finally
            {
                Submit(toSubmit); // sealed buffers always go out, even when this call fails
            }
            if (rent) _ = RentBufferAsync();
            if (wait is null) return (first, last);
            // Wait for a buffer to become free (or be rented) or for the tail to move (the reason is counted in
            // ActiveOrActivate).
            await wait.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Which op a write is at: 0 = start op, 1..regions = region (with an offset), regions+1 = commit op.</summary>
    private struct OpCursor(bool start, int regions, bool commit)
    {
        public int Step = start ? 0 : 1;
        public int Offset;
        public readonly int Regions = regions;
        public readonly bool Commit = commit;
        public readonly bool Done => Step > Regions + (Commit ? 1 : 0);
    }

    /// <summary>Copies the next op (or the next piece of a region) into <paramref name="ic"/>; false when it lacks room. Under the lock.</summary>
    private bool CopyNextOp(Iclog ic, uint tid, IReadOnlyList<ReadOnlyMemory<byte>> regions, ref OpCursor c)
    {
        int free = ic.Free;
        if (c.Step == 0 || c.Step == c.Regions + 1)
        {
            if (free < OpHeader.Size) return false;
            var flags = c.Step == 0 ? OpFlags.Start : OpFlags.Commit;
            AppendOp(ic, new OpHeader(tid, 0, LogClientId.Transaction, flags), ReadOnlySpan<byte>.Empty);
            c.Step++;
            c.Offset = 0;
            return true;
        }

        var region = regions[c.Step - 1].Span;
        int remaining = region.Length - c.Offset;
        if (free < OpHeader.Size + (remaining > 0 ? 1 : 0)) return false;
        int piece = Math.Min(remaining, free - OpHeader.Size);
        bool last = piece == remaining;
        OpFlags f = c.Offset == 0
            ? (last ? OpFlags.None : OpFlags.Continue)
            : (last ? OpFlags.WasContinued | OpFlags.End : OpFlags.WasContinued | OpFlags.Continue);
        AppendOp(ic, new OpHeader(tid, (uint)piece, LogClientId.Transaction, f), region.Slice(c.Offset, piece));
        if (last) { c.Step++; c.Offset = 0; }
        else c.Offset += piece;
        return true;
    }

    private void AppendOp(Iclog ic, in OpHeader op, ReadOnlySpan<byte> data)
    {
        var dst = ic.Buffer!.AsSpan(LogFormat.BlockSize + ic.Used);
        op.Write(dst);
        data.CopyTo(dst[OpHeader.Size..]);
        ic.Used += OpHeader.Size + data.Length;
        ic.OpCount++;
        _ops++;
        _payloadBytes += OpHeader.Size + data.Length;
    }

    /// <summary>
    /// Returns the active buffer, activating the next one if there is none. Returns null with a task to wait on when
    /// the next buffer is still in flight, the log lacks room before the tail, or every buffer the writer holds is in
    /// use (then <paramref name="rent"/> is set when the caller should start renting one, after the lock). A pad record
    /// needed at the last block of the log is sealed here (added to <paramref name="toSubmit"/>). Under the lock.
    /// </summary>
    private Iclog? ActiveOrActivate(List<Iclog> toSubmit, out Task? wait, ref bool rent)
    {
        wait = null;
        while (true)
        {
            if (_activeIndex >= 0) return _ring[_activeIndex];
            var ic = _ring[_nextIndex];
            if (ic.State != IclogState.Free)
            {
                _bufferWaits++;
                _bufferFreed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _bufferFreed.Task;
                return null;
            }
            long left = _n - _headAbs % _n;
            long need = left == 1 ? 1 : Math.Min(1 + _options.IclogPayloadBlocks, left);
            if (_tailAbs + _n - _headAbs < need)
            {
                _spaceWaits++;
                _tailMoved ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _tailMoved.Task;
                return null;
            }
            if (_freeCount == 0)
            {
                // Every buffer held is attached to a slot on its way to disk; one comes back after the next flush.
                // Meanwhile rent one more, if the pool may give it (the renting task completes the same wait).
                _bufferMemoryWaits++;
                if (_pool is not null && !_renting && _heldBuffers < _ring.Length) { _renting = true; rent = true; }
                _bufferFreed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _bufferFreed.Task;
                return null;
            }
            uint cycle = (uint)(_headAbs / _n);
            if (cycle > LogFormat.MaxCycle)
                throw new JournalException($"{_region.Name}: the log cycle has reached its limit {LogFormat.MaxCycle}; reformat the log");
            ic.Buffer = _freeBuffers[--_freeCount];
            _freeBuffers[_freeCount] = null!;
            ic.State = IclogState.Active;
            ic.StartAbs = _headAbs;
            ic.Lsn = ToLsn(_headAbs);
            ic.Used = 0;
            ic.OpCount = 0;
            ic.ForcePending = false;
            ic.Kind = left == 1 ? RecordKind.Pad : RecordKind.Data;
            ic.CapacityBytes = (int)(need - 1) * LogFormat.BlockSize;
            _activeIndex = _nextIndex;
            _nextIndex = (_nextIndex + 1) % _ring.Length;
            _busyCount++;
            if (ic.Kind == RecordKind.Pad)
            {
                _pads++;
                Seal(ic, toSubmit);
                continue;
            }
            return ic;
        }
    }

    /// <summary>Fixes the header of the active buffer, advances the head and hands the buffer to its sync task. Under the lock.</summary>
    private void Seal(Iclog ic, List<Iclog> toSubmit)
    {
        ic.Blocks = 1 + LogFormat.PayloadBlocksFor(ic.Used);
        ic.Header = new RecordHeader
        {
            Magic = LogFormat.RecordMagic,
            Cycle = ic.Lsn.Cycle,
            Version = LogFormat.Version,
            Kind = ic.Kind,
            Length = (uint)ic.Used,
            Lsn = ic.Lsn,
            TailLsn = ToLsn(Math.Min(_tailAbs, ic.StartAbs)),
            OpCount = (uint)ic.OpCount,
            PreviousBlock = _prevBlock,
            LogBlocks = _n,
            DurableLsn = _durableLsn,
        };
        _prevBlock = ic.Lsn.Block;
        _headAbs = ic.StartAbs + ic.Blocks;
        _lastSealedLsn = ic.Lsn;
        ic.State = IclogState.Syncing;
        _activeIndex = -1;
        _records++;
        _bytesWritten += (long)ic.Blocks << LogFormat.BlockShift;
        _ioInFlight++;
        toSubmit.Add(ic);
    }

    /// <summary>
    /// Set while a force with <see cref="LogWriterOptions.FlushOnForcingThread"/> (and no cancellation token) submits the
    /// buffer it sealed: the flush loop that the buffer's write starts on this thread runs its first device flush here,
    /// blocking, instead of on a pool thread; that flush covers the buffer. The loop reads it once, as it starts, so a
    /// loop started on a pool thread (a device whose write completed later) flushes there as usual, and the loop's
    /// later rounds go to the pool.
    /// </summary>
    [ThreadStatic] private static bool t_flushHere;

    /// <summary>
    /// <see cref="Submit"/> for a force that runs the flush its buffer's write starts on its own thread (it would only
    /// wait for it). Never under the lock. A flush loop already running on another thread covers the buffer instead.
    /// </summary>
    private void SubmitAndFlushHere(List<Iclog> toSubmit)
    {
        t_flushHere = true;
        try { Submit(toSubmit); }
        finally { t_flushHere = false; }
    }

    /// <summary>
    /// Starts the sync task of every sealed buffer, in LSN order. Never under the lock. A sync task may run inline
    /// (synchronous devices) and seal and submit more through the same per-thread list, so each buffer is taken off
    /// the list before its task starts.
    /// </summary>
    private void Submit(List<Iclog> toSubmit)
    {
        while (toSubmit.Count > 0)
        {
            var ic = toSubmit[0];
            toSubmit.RemoveAt(0);
            _ = SyncAsync(ic);
        }
    }

    /// <summary>
    /// Stamps, checksums and writes one sealed buffer, then makes sure a flush will cover it (running the flush loop
    /// itself if none is running). Owns the buffer until it is marked written.
    /// </summary>
    private async Task SyncAsync(Iclog ic)
    {
        try
        {
            var buffer = ic.Buffer!;
            int blocks = RecordCodec.Seal(buffer, ref ic.Header);
            long sector = _region.StartSector + ic.Lsn.Block;
            await _device.WriteAsync(sector, buffer.AsMemory(0, blocks * LogFormat.BlockSize)).ConfigureAwait(false);
            bool runFlush;
            lock (_lock)
            {
                ic.State = IclogState.Written;
                runFlush = !_flushRunning && _failure is null;
                if (runFlush) _flushRunning = true;
            }
            if (runFlush) await FlushLoopAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Fail(e);
        }
        finally
        {
            TaskCompletionSource? idle = null;
            lock (_lock)
            {
                if (--_ioInFlight == 0 && _ioIdle is not null) { idle = _ioIdle; _ioIdle = null; }
            }
            idle?.TrySetResult();
        }
    }

    /// <summary>
    /// Flushes the device until no written buffer is left uncovered. Only one runs at a time (<c>_flushRunning</c>).
    /// Each round covers every buffer whose write had finished when the round started.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushLoopAsync()
    {
        // Whether the first flush runs here, on a forcing thread that asked for that (see t_flushHere); later rounds of
        // the loop (buffers written during that flush) always go to the pool, so the force returns once its own
        // buffer is durable instead of draining the log for everyone.
        bool here = t_flushHere;
        while (true)
        {
            lock (_lock)
            {
                int covered = 0;
                if (_failure is null)
                {
                    foreach (var ic in _ring)
                        if (ic.State == IclogState.Written) { ic.State = IclogState.Flushing; covered++; }
                }
                if (covered == 0) { _flushRunning = false; return; }
            }
            try
            {
                // On the forcing thread when it asked for that (it would only wait for this flush otherwise), else on
                // a pool thread.
                if (here)
                {
                    here = false;
                    _device.Flush();
                }
                else await _device.FlushAsync().ConfigureAwait(false);
            }
            catch
            {
                lock (_lock) _flushRunning = false;
                throw;
            }
            var toSubmit = SubmitList();
            lock (_lock)
            {
                _flushes++;
                foreach (var ic in _ring)
                    if (ic.State == IclogState.Flushing) ic.State = IclogState.Durable;
                AdvanceDurable(toSubmit);
            }
            // A buffer a force was waiting for goes out now; its write lands before the next round of this loop.
            Submit(toSubmit);
        }
    }

    /// <summary>
    /// Frees durable buffers in ring order, completes the forces they satisfy, and seals the active buffer if a force
    /// is waiting for it (adding it to <paramref name="toSubmit"/>). Under the lock.
    /// </summary>
    private void AdvanceDurable(List<Iclog> toSubmit)
    {
        bool freed = false;
        while (_busyCount > 0)
        {
            var ic = _ring[_oldestIndex];
            if (ic.State != IclogState.Durable) break;
            _durableLsn = ic.Lsn;
            ic.State = IclogState.Free;
            _freeBuffers[_freeCount++] = ic.Buffer!;
            ic.Buffer = null;
            _oldestIndex = (_oldestIndex + 1) % _ring.Length;
            _busyCount--;
            freed = true;
        }
        if (!freed) return;
        if (_busyCount == 0) GiveBackRentedBuffers();
        for (int i = _forceWaiters.Count - 1; i >= 0; i--)
        {
            if (_forceWaiters[i].Lsn <= _durableLsn)
            {
                _forceWaiters[i].Done.TrySetResult();
                _forceWaiters.RemoveAt(i);
            }
        }
        if (_bufferFreed is not null) { _bufferFreed.TrySetResult(); _bufferFreed = null; }
        if (_activeIndex >= 0 && _ring[_activeIndex].ForcePending) Seal(_ring[_activeIndex], toSubmit);
    }

    /// <summary>
    /// The writer has fallen idle (no buffer in use): rented buffers go back to the pool, the reserve stays. Under the
    /// lock: the pool's return is lock-free, allocates nothing and runs no continuation.
    /// </summary>
    private void GiveBackRentedBuffers()
    {
        while (_heldBuffers > _reservedBuffers && _freeCount > 0)
        {
            var b = _freeBuffers[--_freeCount];
            _freeBuffers[_freeCount] = null!;
            _heldBuffers--;
            _buffersReturned++;
            _pool!.Return(b);
        }
    }

    /// <summary>
    /// Rents one buffer from the pool for writes waiting for one, on a task of its own (the allocator may fail or
    /// stall; the writes also wait for buffers coming back from the disk, and take whichever is first). One at a time.
    /// </summary>
    private async Task RentBufferAsync()
    {
        await Task.Yield(); // off the writer's path before calling the allocator
        byte[]? b;
        try { b = _pool!.TryRent(_bufferBytes); }
        catch (Exception) { b = null; }
        TaskCompletionSource? wake = null;
        lock (_lock)
        {
            _renting = false;
            if (b is null) _rentFailures++;
            else if (_disposed || _heldBuffers >= _ring.Length || _bufferFreed is null)
            {
                // Not needed any more (a buffer came back from the disk first and nobody waits now): give it back.
            }
            else
            {
                _freeBuffers[_freeCount++] = b;
                _heldBuffers++;
                _buffersRented++;
                b = null;
                wake = _bufferFreed;
                _bufferFreed = null;
            }
        }
        if (b is not null) _pool!.Return(b);
        wake?.TrySetResult();
    }

    /// <summary>
    /// Returns once the record at <paramref name="lsn"/> and every earlier record are on stable storage (written, then
    /// covered by a device flush). An LSN at or below <see cref="DurableLsn"/> returns at once and does no I/O; an LSN
    /// past everything written forces everything written so far. If the record is still being filled it is sealed and
    /// written now, or, while an earlier record is still in flight, as soon as that one is durable, so that the
    /// transactions and forces arriving meanwhile share its write and flush. Concurrent forces share flushes.
    /// </summary>
    public ValueTask ForceAsync(Lsn lsn, CancellationToken cancellationToken = default)
    {
        var toSubmit = SubmitList();
        Task? wait = null;
        bool flushHere = false;
        Lsn target = Lsn.Zero;
        try
        {
            lock (_lock)
            {
                ThrowIfUnusable();
                _forces++;
                if (lsn <= _durableLsn)
                {
                    _forcesNoIo++;
                    return ValueTask.CompletedTask;
                }
                Lsn? pending = null;
                if (_activeIndex >= 0)
                {
                    var a = _ring[_activeIndex];
                    if (a.Lsn <= lsn && a.Used > 0)
                    {
                        // Group commit: while an earlier buffer is still on its way to disk, leave this one open so the
                        // writers and forces arriving meanwhile share its write and flush; it is sealed as soon as an
                        // earlier buffer becomes durable (AdvanceDurable). With nothing in flight, seal it now.
                        if (_busyCount > 1) { a.ForcePending = true; pending = a.Lsn; }
                        else Seal(a, toSubmit);
                    }
                }
                var highest = pending ?? _lastSealedLsn;
                target = lsn < highest ? lsn : highest;
                if (target <= _durableLsn)
                {
                    _forcesNoIo++;
                    return ValueTask.CompletedTask;
                }
                _forceWaits++;
                // A force that can be cancelled never blocks its thread in a flush (the cancellation could not stop it).
                // One that flushes here registers no waiter yet: it looks at the durable LSN once it has flushed.
                flushHere = _options.FlushOnForcingThread && toSubmit.Count > 0 && !cancellationToken.CanBeCanceled;
                if (!flushHere) wait = AddForceWaiterLocked(target);
            }
        }
        finally
        {
            if (flushHere) SubmitAndFlushHere(toSubmit);
            else Submit(toSubmit);
        }
        if (flushHere)
        {
            // Usually durable by now (the flush this thread just ran covered the buffer), so no waiter is allocated.
            // If another thread's flush loop was running, that loop covers the buffer instead: wait for it.
            lock (_lock)
            {
                if (target <= _durableLsn) return ValueTask.CompletedTask;
                if (_failure is not null) return ValueTask.FromException(_failure);
                wait = AddForceWaiterLocked(target);
            }
        }
        // Wait for the record at `target` and all before it to be written and flushed.
        return new ValueTask(wait!.WaitAsync(cancellationToken));
    }

    /// <summary>Registers a force waiting until <paramref name="target"/> is durable. Under the lock.</summary>
    private Task AddForceWaiterLocked(Lsn target)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _forceWaiters.Add((target, tcs));
        return tcs.Task;
    }

    /// <summary>Forces everything written so far.</summary>
    public ValueTask ForceAllAsync(CancellationToken cancellationToken = default) => ForceAsync(new Lsn(uint.MaxValue, uint.MaxValue), cancellationToken);

    /// <summary>
    /// Writes an unmount record (after sealing the record being filled), with its tail set to itself, and waits until
    /// it is durable. Returns its LSN. Call it only when nothing in the log is needed any more (everything has been
    /// written to its home location): recovery of a log whose last record is the unmount record replays nothing.
    /// A later write makes the log dirty again.
    /// </summary>
    public async ValueTask<Lsn> WriteUnmountAsync(CancellationToken cancellationToken = default)
    {
        Lsn lsn = Lsn.Zero;
        while (true)
        {
            Task? wait;
            bool rent = false;
            var toSubmit = SubmitList();
            try
            {
                lock (_lock)
                {
                    ThrowIfUnusable();
                    if (_activeIndex >= 0 && _ring[_activeIndex].Used > 0) Seal(_ring[_activeIndex], toSubmit);
                    var ic = ActiveOrActivate(toSubmit, out wait, ref rent);
                    if (ic is not null)
                    {
                        ic.Kind = RecordKind.Unmount;
                        if (_tailAbs < ic.StartAbs) _tailAbs = ic.StartAbs;
                        Seal(ic, toSubmit);
                        lsn = ic.Lsn;
                    }
                }
            }
            finally
            {
                Submit(toSubmit);
            }
            if (rent) _ = RentBufferAsync();
            if (wait is null) break;
            // Wait for a free buffer or for log space, as a normal write does.
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        await ForceAsync(lsn, cancellationToken).ConfigureAwait(false);
        return lsn;
    }

    /// <inheritdoc/>
    public void MoveTail(Lsn tail)
    {
        TaskCompletionSource? moved = null;
        lock (_lock)
        {
            long abs = Abs(tail);
            long head = _activeIndex >= 0 ? _ring[_activeIndex].StartAbs : NextRecordAbs();
            if (abs > head)
                throw new ArgumentOutOfRangeException(nameof(tail), $"{_region.Name}: tail {tail} is beyond the head {ToLsn(head)}");
            if (abs <= _tailAbs) return;
            _tailAbs = abs;
            moved = _tailMoved;
            _tailMoved = null;
        }
        moved?.TrySetResult();
    }

    /// <inheritdoc/>
    public Task WaitForTailMoveAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            long left = _n - _headAbs % _n;
            long need = left == 1 ? 1 + _options.MaxRecordBlocks : _options.MaxRecordBlocks;
            if (_activeIndex >= 0 || _tailAbs + _n - _headAbs >= need) return Task.CompletedTask;
            // The caller waits for log space: the next MoveTail (or a shutdown) completes this.
            _tailMoved ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _tailMoved.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Writes zero blocks stamped with the previous cycle from the head up to <paramref name="staleEndAbs"/> (never reaching the tail), then flushes.</summary>
    private void ClearStaleBlocks(long staleEndAbs)
    {
        long from = _headAbs;
        long to = Math.Min(staleEndAbs, _tailAbs + _n);
        if (to <= from) return;
        var buf = new byte[(int)Math.Min(256, to - from) * LogFormat.BlockSize];
        while (from < to)
        {
            long block = from % _n;
            int count = (int)Math.Min(Math.Min(to - from, _n - block), buf.Length / LogFormat.BlockSize);
            uint stamp = (uint)(from / _n) - 1;
            buf.AsSpan().Clear();
            for (int i = 0; i < count; i++)
                BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(i * LogFormat.BlockSize), stamp);
            _device.Write(_region.StartSector + block, buf.AsSpan(0, count * LogFormat.BlockSize));
            from += count;
        }
        _device.Flush();
    }

    private void Fail(Exception e)
    {
        List<TaskCompletionSource> toFail = new();
        Exception failure;
        lock (_lock)
        {
            _failure ??= e is JournalException or ObjectDisposedException
                ? e
                : new JournalException($"{_region.Name}: log shut down after an I/O error: {e.Message}", e);
            failure = _failure;
            foreach (var (_, done) in _forceWaiters) toFail.Add(done);
            _forceWaiters.Clear();
            if (_bufferFreed is not null) { toFail.Add(_bufferFreed); _bufferFreed = null; }
            if (_tailMoved is not null) { toFail.Add(_tailMoved); _tailMoved = null; }
        }
        foreach (var t in toFail) t.TrySetException(failure);
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure is not null) throw _failure;
    }

    private long NextRecordAbs() => _n - _headAbs % _n == 1 ? _headAbs + 1 : _headAbs;

    private long Abs(Lsn lsn) => (long)lsn.Cycle * _n + lsn.Block;

    private Lsn ToLsn(long abs) => new((uint)(abs / _n), (uint)(abs % _n));

    /// <summary>
    /// Closes the writer: waiters fail, later calls throw <see cref="ObjectDisposedException"/>, and the call returns
    /// once no write or flush of this writer is running. Data not yet forced may or may not be durable. The device is
    /// not disposed.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        Task? idle = null;
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            if (_ioInFlight > 0)
            {
                _ioIdle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                idle = _ioIdle.Task;
            }
        }
        Fail(new ObjectDisposedException(nameof(LogWriter), $"{_region.Name}: the log writer is closed"));
        // Wait for running writes and flushes to finish so the caller may dispose the device.
        if (idle is not null) await idle.ConfigureAwait(false);
        if (_pool is not null)
        {
            lock (_lock)
            {
                // Buffers still attached to slots were written; the writer is done with all of them.
                foreach (var ic in _ring)
                    if (ic.Buffer is { } b) { ic.Buffer = null; _freeBuffers[_freeCount++] = b; }
                GiveBackRentedBuffers();
            }
        }
    }

    /// <summary>Synchronous <see cref="DisposeAsync"/>.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <inheritdoc/>
    public override string ToString()
    {
        lock (_lock)
            return string.Create(CultureInfo.InvariantCulture,
                $"LogWriter({_region}, head={ToLsn(_headAbs)}, tail={ToLsn(_tailAbs)}, durable={_durableLsn}, {_options})");
    }
}
