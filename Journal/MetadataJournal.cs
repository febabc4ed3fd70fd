using System.Diagnostics;
using Journal.Ail;
using Journal.Cil;
using Journal.Diagnostics;
using Journal.Format;
using Journal.Log;
using Journal.Memory;
using Journal.Recovery;
using Journal.Storage;
using Microsoft.Extensions.ObjectPool;

namespace Journal;

/// <summary>
/// A crash-safe metadata journal in the style of XFS delayed logging: transactions commit log items into an in-memory
/// committed-item list (CIL); a background push writes the list as one checkpoint into the on-disk log; a log force
/// waits until a checkpoint is durable (concurrent forces share one device flush); the active item list (AIL) writes
/// items home and moves the log tail. See docs/journal.md for the paths and their locking rules.
/// </summary>
/// <remarks>
/// All members are safe to call from many threads at once.
/// </remarks>
/// <example>
/// A change committed and made durable, from the key-value store sample (<c>docs/samples/KeyValueStore</c>), whose
/// items are <see cref="LockedLogItem"/>s:
/// <include file="obj/doc-snippets.xml" path="snippets/snippet[@id='Put']/*"/>
/// Opening after a crash, with the recovery handler of the items' type:
/// <include file="obj/doc-snippets.xml" path="snippets/snippet[@id='Open']/*"/>
/// </example>
public sealed class MetadataJournal : IAsyncDisposable, IDisposable
{
    private const int StateOpen = 0, StateClosing = 1, StateClosed = 2;

    private readonly ILogSink _log;
    private readonly BoundedBufferPool _pool;
    private readonly JournalCounters _counters = new();
    private readonly ObjectPool<TransactionState> _transactions;
    private readonly Func<bool, ValueTask>? _closeLog; // argument: clean (write the unmount record)
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly JournalDiagnostics _diagnostics;
    private int _state;

    private MetadataJournal(ILogSink log, JournalOptions options, ulong firstSequence, Func<bool, ValueTask>? closeLog, BoundedBufferPool? pool = null)
    {
        _log = log;
        Options = options;
        _closeLog = closeLog;
        _pool = pool ?? CreatePool(options);
        Space = new LogSpace(log, _counters);
        Cil = new CommittedItemList(log, options, _pool, new LogCostModel(log), Space, _counters, firstSequence);
        Cil.SetDurableSequence(firstSequence - 1);
        Ail = new ActiveItemList(log, Cil, Space, _counters);
        Space.SetPressureCallback(OnSpacePressure);
        _transactions = new DefaultObjectPool<TransactionState>(new TransactionPolicy(), 1024);

        // Diagnostics before anything runs: the name is unique among open journals (metrics tag and log messages).
        string logName = log is LogWriter w ? w.Region.Name : "journal";
        _diagnostics = new JournalDiagnostics(options.CreateLogger(JournalLogCategories.Journal), options.Name ?? logName);
        Name = _diagnostics.Name = JournalMetrics.Register(this, _diagnostics.Name);
        Cil.Diagnostics = _diagnostics;
        _pool.Reserve.EpisodeStarted = push => _diagnostics.EmergencyEpisode(push, _pool.Reserve.Current, _pool.Reserve.Max, _pool.Reserve.Total);

        Cil.Attach(Ail);
        Ail.Start();
        _diagnostics.Started(logName, (long)log.LogBlocks * 512, firstSequence);
    }

    /// <summary>
    /// The journal's name: in its log messages and in the <see cref="JournalMetrics.JournalNameTag"/> tag of its metrics.
    /// <see cref="JournalOptions.Name"/> (or the log's device name), with <c>#2</c>, <c>#3</c>... appended when another
    /// open journal of the process has that name.
    /// </summary>
    public string Name { get; }

    /// <summary>The journal's budgeted pool: log vectors, checkpoint headers and the log writer's rented buffers.</summary>
    private static BoundedBufferPool CreatePool(JournalOptions options) =>
        new(options.MemoryBudgetBytes, options.EmergencyReserveBytes, options.EmergencyBufferBytes, options.Allocator,
            exactBufferBytes: options.ToLogWriterOptions().BufferBytes);

    internal CommittedItemList Cil { get; }
    internal ActiveItemList Ail { get; }
    internal LogSpace Space { get; }
    internal BoundedBufferPool Pool => _pool;
    internal JournalCounters Counters => _counters;

    /// <summary>The log writer, when the journal writes through one (not a test sink).</summary>
    internal LogWriter? Writer => _log as LogWriter;

    /// <summary>Log space in use: written between the tail and the head, plus reserved and not yet written.</summary>
    internal long LogUsedBytes => _log.UsedBytes + Space.Outstanding;

    /// <summary>The options this journal runs with.</summary>
    public JournalOptions Options { get; }

    /// <summary>The log this journal writes.</summary>
    internal ILogSink Log => _log;

    /// <summary>
    /// Formats <paramref name="region"/> as an empty log (everything it held is lost) and starts a journal on it.
    /// <see cref="CloseAsync"/> writes the log's unmount record and closes the log writer; the device stays open.
    /// </summary>
    /// <exception cref="JournalArgumentException">Bad options or a bad region (one line naming the device).</exception>
    public static MetadataJournal Create(LogRegion region, JournalOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Create(region, options, formatted: false);
    }

    private static MetadataJournal Create(LogRegion region, JournalOptions options, bool formatted)
    {
        var writerOptions = ValidateFor(region, options);
        if (!formatted) LogWriter.Format(region);
        var pool = CreatePool(options);
        var writer = LogWriter.Open(region, LogRecovery.Recover(region), writerOptions, pool);
        return new MetadataJournal(writer, options, 1, CloseWriter(writer), pool);
    }

    /// <summary>
    /// Recovers the log in <paramref name="region"/> and starts a journal on it, in three steps: scan
    /// (<see cref="JournalRecovery.Scan"/>: the log is read once and validated; a torn write at its head is cut off,
    /// damage before it and unsound checkpoints are refused with <see cref="CorruptionException"/>); replay
    /// (<see cref="JournalRecovery.Replay(RecoveredLog, IReadOnlyDictionary{ushort, IItemRecoveryHandler}, IReadOnlyCollection{ushort}?, CancellationToken)"/>:
    /// every checkpoint, in order, into the handler registered for each item's type, skipping copies at or below the
    /// LSN an item's home copy reflects), then every handler's <see cref="IItemRecoveryHandler.Complete"/>; and open for
    /// writing (<see cref="Open(RecoveredLog, JournalOptions)"/>). A cleanly closed log replays nothing. Sequences
    /// continue after the last recovered checkpoint.
    /// </summary>
    /// <exception cref="CorruptionException">The log is damaged (one line: device, block, LSN, expected, found).</exception>
    /// <exception cref="JournalException">A checkpoint holds an item type with no handler (nothing was applied).</exception>
    /// <exception cref="JournalArgumentException">Bad options or a bad region (one line naming the device).</exception>
    public static MetadataJournal Open(LogRegion region, JournalOptions options, IReadOnlyDictionary<ushort, IItemRecoveryHandler> handlers)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handlers);
        ValidateFor(region, options);
        var recovered = JournalRecovery.Scan(region);
        JournalRecovery.Replay(recovered, handlers);
        long start = Stopwatch.GetTimestamp();
        foreach (var h in handlers.Values.Distinct()) h.Complete();
        return Open(recovered, options, Stopwatch.GetElapsedTime(start));
    }

    /// <summary>
    /// Starts a journal on a log that was scanned (<see cref="JournalRecovery.Scan"/>) and replayed by the caller: the
    /// log is opened for writing after the recovered head (the writer first clears what a lost write may have left past
    /// it) and sequences continue after the last recovered checkpoint. The caller must have replayed every item type in
    /// the log and run every handler's <see cref="IItemRecoveryHandler.Complete"/> (the log tail may move past the
    /// replayed checkpoints from now on). Nothing is read from the log again.
    /// </summary>
    /// <exception cref="InvalidOperationException">Some item type in the log was not replayed.</exception>
    /// <exception cref="JournalArgumentException">Bad options for the log's region.</exception>
    public static MetadataJournal Open(RecoveredLog recovered, JournalOptions options) => Open(recovered, options, TimeSpan.Zero);

    private static MetadataJournal Open(RecoveredLog recovered, JournalOptions options, TimeSpan completeTime)
    {
        ArgumentNullException.ThrowIfNull(recovered);
        ArgumentNullException.ThrowIfNull(options);
        var region = recovered.Region;
        var writerOptions = ValidateFor(region, options);
        var missing = recovered.ItemTypes.Where(t => !recovered.ReplayedTypes.Contains(t)).Order().ToArray();
        if (missing.Length > 0)
            throw new InvalidOperationException($"{region.Name}: the recovered log was not replayed for item types {string.Join(", ", missing)}");
        var pool = CreatePool(options);
        var writer = LogWriter.Open(region, recovered.Log, writerOptions, pool);
        return new MetadataJournal(writer, options, recovered.LastSequence + 1, CloseWriter(writer), pool)
        {
            RecoveredCheckpoints = recovered.Checkpoints.Count,
            RecoveredItemsApplied = recovered.ItemsApplied,
            RecoveredItemsSkipped = recovered.ItemsSkipped,
            Recovery = recovered.Summarize(completeTime),
        };
    }

    /// <summary>Validates the region and the options for it; returns the log writer's options.</summary>
    private static LogWriterOptions ValidateFor(LogRegion region, JournalOptions options)
    {
        region.Validate();
        options.Validate(region.Bytes);
        var writerOptions = options.ToLogWriterOptions();
        writerOptions.Validate(region.BlockCount, region.Name);
        return writerOptions;
    }

    private static Func<bool, ValueTask> CloseWriter(LogWriter writer) => async clean =>
    {
        try
        {
            // The unmount record says "nothing to replay": only when every item is home.
            if (clean) await writer.WriteUnmountAsync().ConfigureAwait(false);
        }
        finally
        {
            await writer.DisposeAsync().ConfigureAwait(false);
        }
    };

    /// <summary>
    /// Starts a journal on a log sink that is already open and empty (a <see cref="LogWriter"/> you opened yourself,
    /// or a test double). The sink stays yours: <see cref="CloseAsync"/> does not close it.
    /// </summary>
    /// <exception cref="JournalArgumentException">Bad options.</exception>
    public static MetadataJournal Create(ILogSink log, JournalOptions options)
    {
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate((long)log.LogBlocks * 512);
        return new MetadataJournal(log, options, 1, null);
    }

    /// <summary>
    /// What recovery found and did when the journal was opened on an existing log (records scanned, checkpoints,
    /// item copies applied, a torn head cut off, the time it took); null for a journal on a log just formatted.
    /// </summary>
    public JournalRecoverySummary? Recovery { get; private init; }

    // A device the journal opened itself (OpenOrCreateAsync): closed after the log, when the journal closes.
    private IDisposable? _ownedDevice;

    /// <summary>
    /// <see cref="Create(LogRegion, JournalOptions)"/> on a worker thread: formats <paramref name="region"/> (every block
    /// is written) and starts a journal on it. <paramref name="cancellationToken"/> is checked before the format starts
    /// and after it ends; a format once started runs to its end (a log cut short would be neither the old one nor a new
    /// one). A cancelled create leaves nothing open.
    /// </summary>
    /// <exception cref="JournalArgumentException">Bad options or a bad region (thrown before anything is written).</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is open.</exception>
    public static Task<MetadataJournal> CreateAsync(LogRegion region, JournalOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ValidateFor(region, options);
        return Task.Run(() =>
        {
            LogWriter.Format(region);
            cancellationToken.ThrowIfCancellationRequested();
            return Create(region, options, formatted: true);
        }, cancellationToken);
    }

    /// <summary>
    /// <see cref="Open(LogRegion, JournalOptions, IReadOnlyDictionary{ushort, IItemRecoveryHandler})"/> on a worker
    /// thread, cancellable: the scan checks <paramref name="cancellationToken"/> as it reads, the replay before each
    /// checkpoint, and each handler's <see cref="IItemRecoveryHandler.CompleteAsync"/> gets it. The log is opened for
    /// writing only after all of that, so a cancelled open leaves nothing open and the log as it was (home copies may
    /// hold some replayed items: the next open replays again, which gives the same result).
    /// </summary>
    /// <exception cref="CorruptionException">The log is damaged (one line: device, block, LSN, expected, found).</exception>
    /// <exception cref="JournalException">A checkpoint holds an item type with no handler (nothing was applied).</exception>
    /// <exception cref="JournalArgumentException">Bad options or a bad region (thrown before anything is read).</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is open.</exception>
    public static Task<MetadataJournal> OpenAsync(LogRegion region, JournalOptions options, IReadOnlyDictionary<ushort, IItemRecoveryHandler> handlers,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handlers);
        ValidateFor(region, options);
        return Task.Run(() => RecoverAsync(region, options, handlers, cancellationToken), cancellationToken);
    }

    private static async Task<MetadataJournal> RecoverAsync(LogRegion region, JournalOptions options,
        IReadOnlyDictionary<ushort, IItemRecoveryHandler> handlers, CancellationToken cancellationToken)
    {
        var recovered = JournalRecovery.Scan(region, cancellationToken);
        JournalRecovery.Replay(recovered, handlers, null, cancellationToken);
        long start = Stopwatch.GetTimestamp();
        foreach (var h in handlers.Values.Distinct()) await h.CompleteAsync(cancellationToken).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        return Open(recovered, options, Stopwatch.GetElapsedTime(start));
    }

    /// <summary>
    /// Opens the journal whose log is the file <paramref name="path"/>, or makes it: a missing file is created with
    /// <see cref="JournalOptions.LogSizeBytes"/>, formatted and made durable under a temporary name in the same folder
    /// (<c>&lt;name&gt;.&lt;random&gt;.creating</c>), then renamed into place, so the path only ever names a whole log;
    /// an existing file is recovered as <see cref="OpenAsync"/> does (its own size is the log's; a file that is not a
    /// log is refused with <see cref="CorruptionException"/> and left as it is). The journal owns the file: it holds
    /// the file's exclusive lock (a second opener gets <see cref="DeviceOpenException"/> with
    /// <see cref="DeviceOpenError.InUse"/>) and closes it when the journal closes. A failed or cancelled call leaves
    /// nothing open; a create killed part way leaves only a <c>.creating</c> file, which holds no data.
    /// </summary>
    /// <exception cref="DeviceOpenException">The path is a directory, not a regular file, in use, or not writable.</exception>
    /// <exception cref="CorruptionException">The existing file is not a sound log.</exception>
    /// <exception cref="JournalArgumentException">Bad options (thrown before anything is made).</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is open, and no file was left half made under <paramref name="path"/>.</exception>
    public static Task<MetadataJournal> OpenOrCreateAsync(string path, JournalOptions options, IReadOnlyDictionary<ushort, IItemRecoveryHandler> handlers,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handlers);
        options.Validate();
        string full = Path.GetFullPath(path);
        return Task.Run(async () =>
        {
            if (!File.Exists(full) && !Directory.Exists(full)) MakeLogFile(full, options, cancellationToken);
            cancellationToken.ThrowIfCancellationRequested();
            var device = FileBlockDevice.Open(full, lockExclusive: true);
            try
            {
                var region = new LogRegion(device, 0, (uint)Math.Min(device.SectorCount, LogFormat.MaxLogBlocks));
                ValidateFor(region, options);
                var journal = await RecoverAsync(region, options, handlers, cancellationToken).ConfigureAwait(false);
                journal._ownedDevice = device;
                return journal;
            }
            catch
            {
                device.Dispose();
                throw;
            }
        }, cancellationToken);
    }

    /// <summary>Makes a formatted, durable log file at <paramref name="path"/> (which does not exist) through a temporary name.</summary>
    private static void MakeLogFile(string path, JournalOptions options, CancellationToken cancellationToken)
    {
        string temp = $"{path}.{Guid.NewGuid().ToString("N")[..8]}.creating";
        try
        {
            using (var device = FileBlockDevice.Create(temp, options.LogSizeBytes / 512, lockExclusive: true))
            {
                var region = new LogRegion(device, 0, (uint)Math.Min(device.SectorCount, LogFormat.MaxLogBlocks));
                ValidateFor(region, options);
                cancellationToken.ThrowIfCancellationRequested();
                LogWriter.Format(region);
            }
            cancellationToken.ThrowIfCancellationRequested();
            // The rename refuses to replace a file another caller made meanwhile; that file is then opened instead.
            try { File.Move(temp, path, overwrite: false); }
            catch (IOException) when (File.Exists(path)) { File.Delete(temp); return; }
            FileBlockDevice.SyncDirectory(Path.GetDirectoryName(path)!);
        }
        catch
        {
            try { if (File.Exists(temp)) File.Delete(temp); } catch (IOException) { } // ours: made above
            throw;
        }
    }

    /// <summary>Checkpoints found in the log when it was opened.</summary>
    public long RecoveredCheckpoints { get; private init; }

    /// <summary>Logged item copies applied by recovery.</summary>
    public long RecoveredItemsApplied { get; private init; }

    /// <summary>Logged item copies recovery skipped because the home copy was as new or newer.</summary>
    public long RecoveredItemsSkipped { get; private init; }

    /// <summary>
    /// Log bytes to reserve for committing one item of <paramref name="size"/> in a transaction of its own (the item,
    /// its header and a checkpoint's fixed overhead). Sum the item parts for several items.
    /// </summary>
    public long EstimateLogBytes(LogItemSize size) => Cil.CostModel.ItemCost(size) + Cil.CostModel.ContextOverhead;

    /// <summary>
    /// Formats <paramref name="region"/> as an empty log whose first record is at cycle <paramref name="firstCycle"/>
    /// (every block is written; whatever the region held is lost). Resetting the log of items whose home copies carry
    /// LSNs of an earlier log needs a cycle above every one of them, so that replay never skips a new checkpoint for a
    /// stamp of the old log (what <c>jreplay zero-log</c> does). Cycle 1 is what <see cref="Create(LogRegion, JournalOptions)"/> writes.
    /// </summary>
    /// <exception cref="JournalArgumentException">A bad region or a cycle outside 1..<see cref="Format.LogFormat.MaxCycle"/>.</exception>
    public static void FormatLog(LogRegion region, uint firstCycle = 1) => LogWriter.Format(region, firstCycle);

    /// <summary>
    /// The largest reservation one transaction should ask for: a quarter of the log, and at most half the CIL's hard
    /// limit, so that a transaction of this size never waits for log space that only its own commit could free and
    /// never holds the CIL past its hard limit by itself. A batch bigger than this is committed as several transactions.
    /// </summary>
    public long MaxTransactionBytes => Math.Min(Space.MaxReservation / 2, Cil.HardLimit / 2);

    /// <summary>
    /// Starts a transaction holding <paramref name="reserveBytes"/> of log space (see <see cref="EstimateLogBytes"/>).
    /// Waits, and never fails, while the log is full: the AIL moves the tail and the reservation proceeds. Call it
    /// before taking the locks of the items you will change, and reserve enough: a commit that needs more takes the
    /// rest from the log's headroom without waiting (counted in <see cref="JournalStatistics.ReservationOverruns"/>),
    /// because it may run under item locks that the AIL needs.
    /// </summary>
    /// <exception cref="JournalArgumentException">The reservation is larger than half the log.</exception>
    /// <exception cref="JournalException">The journal is closed or shut down after an error.</exception>
    public ValueTask<Transaction> BeginTransactionAsync(int reserveBytes, CancellationToken cancellationToken = default)
    {
        ThrowIfNotOpen();
        if (reserveBytes < 0) throw new JournalArgumentException($"reservation of {reserveBytes} bytes is negative");
        if (Space.TryReserve(reserveBytes)) return new ValueTask<Transaction>(RentTransaction(reserveBytes));
        return BeginSlowAsync(reserveBytes, cancellationToken);
    }

    private async ValueTask<Transaction> BeginSlowAsync(int reserveBytes, CancellationToken cancellationToken)
    {
        await Space.ReserveAsync(reserveBytes, cancellationToken).ConfigureAwait(false);
        return RentTransaction(reserveBytes);
    }

    private Transaction RentTransaction(long reserved)
    {
        var state = _transactions.Get();
        state.Start(this, reserved);
        return new Transaction(state);
    }

    internal void ReturnTransaction(TransactionState state) => _transactions.Return(state);

    /// <summary>The sequence of the checkpoint collecting commits now.</summary>
    public ulong CurrentSequence => Cil.CurrentSequence;

    /// <summary>Every checkpoint at or below this sequence is durable.</summary>
    public ulong DurableSequence => Cil.DurableSequence;

    /// <summary>
    /// Completes once checkpoint <paramref name="sequence"/> (as returned by <see cref="Transaction.Commit"/>) and every
    /// earlier one are on stable storage. A sequence already durable returns at once without I/O; concurrent forces
    /// share one device flush. A force that waits allocates nothing: its value task is backed by a pooled source, so
    /// await it once (or call <see cref="ValueTask.AsTask"/> once), as with any value task.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The sequence has not been issued yet.</exception>
    public ValueTask ForceAsync(ulong sequence, CancellationToken cancellationToken = default)
    {
        if (sequence <= Cil.DurableSequence) return ValueTask.CompletedTask;
        return Cil.ForceAsync(sequence, cancellationToken);
    }

    /// <summary>Makes everything committed so far durable; returns the sequence that is now durable.</summary>
    public ValueTask<ulong> ForceAllAsync(CancellationToken cancellationToken = default) => Cil.ForceAllAsync(cancellationToken);

    /// <summary>
    /// Writes home every item whose checkpoint is durable (not pinned), flushes their devices and moves the log tail.
    /// Returns the number of items written. Does not force the log first (call <see cref="ForceAllAsync"/> for that).
    /// </summary>
    public async ValueTask<long> WriteBackAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfNotOpen();
        long n = await Ail.WriteBackAllAsync(cancellationToken).ConfigureAwait(false);
        return n;
    }

    /// <summary>Counters since the journal was created or opened.</summary>
    public JournalStatistics Statistics => new(
        Interlocked.Read(ref _counters.Commits), Interlocked.Read(ref _counters.ItemsCommitted), Interlocked.Read(ref _counters.Relogs),
        Interlocked.Read(ref _counters.Pushes), Interlocked.Read(ref _counters.Checkpoints), Interlocked.Read(ref _counters.CheckpointBytes),
        Interlocked.Read(ref _counters.Forces), Interlocked.Read(ref _counters.AilWriteBacks), Interlocked.Read(ref _counters.AilFlushes),
        Interlocked.Read(ref _counters.TailMoves), Interlocked.Read(ref _counters.HardLimitWaits), Interlocked.Read(ref _counters.SpaceWaits),
        Interlocked.Read(ref _counters.MemoryWaits), Interlocked.Read(ref _counters.ReservationOverruns), Cil.CurrentSequence, Cil.DurableSequence, Ail.Count, Space.Outstanding,
        _log is LogWriter w ? w.Statistics.BytesWritten : 0,
        Interlocked.Read(ref _counters.Gathers), Interlocked.Read(ref _counters.GatherTimeouts));

    /// <summary>Memory use of the journal's pool and emergency reserve.</summary>
    public MemoryStatistics MemoryStatistics
    {
        get
        {
            var w = _log is LogWriter writer ? writer.Statistics : default;
            return new(_pool.BudgetBytes, _pool.CurrentBytes, _pool.PeakBytes, _pool.Failures,
                _pool.Reserve.Current, _pool.Reserve.Max, _pool.Reserve.Total,
                w.BuffersHeld, w.BuffersReserved, w.RentFailures);
        }
    }

    /// <summary>
    /// Closes the journal: forces everything committed, writes every item home through the AIL, flushes, moves the tail
    /// to the head, and closes the log, writing its unmount record if every item went home. Call it after the last
    /// transaction has finished.
    /// </summary>
    /// <remarks>
    /// <para>Whatever happens (the token cancelled, an I/O error, a journal shut down by an earlier error) the close
    /// finishes: the push and the AIL stop, the log writer the journal opened is closed (its in-flight writes finish
    /// first) and its buffers go back to the pool. Only the unmount record depends on the outcome: a close that was
    /// cancelled, failed or found items not yet home writes none, and the next open replays the log (idempotently).</para>
    /// <para><paramref name="cancellationToken"/> cuts short the waiting for the force and the write-back; the close then
    /// completes as above and throws <see cref="OperationCanceledException"/>. It does not cut short the wait for
    /// writes already submitted to the device.</para>
    /// <para>Idempotent: a second call (also while the first runs) waits until the journal is closed and returns;
    /// its token only cuts short that wait.</para>
    /// </remarks>
    /// <exception cref="OperationCanceledException">The token was cancelled before everything was home: closed without the unmount record.</exception>
    /// <exception cref="JournalException">The journal was shut down by an error (closed without the unmount record).</exception>
    public async ValueTask CloseAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.CompareExchange(ref _state, StateClosing, StateOpen) != StateOpen)
        {
            // Why we wait: another call is closing the journal; this one returns once it is closed.
            await _closed.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            return;
        }
        bool cancelled = false;
        try
        {
            if (Cil.ShutdownError is null)
            {
                await Cil.ForceAllAsync(cancellationToken).ConfigureAwait(false);
                for (int i = 0; i < 100 && Ail.Count > 0; i++)
                {
                    await Ail.WriteBackAllAsync(cancellationToken).ConfigureAwait(false);
                    // Why we wait: busy items (their lock held, or pinned by a newer checkpoint) are retried shortly.
                    if (Ail.Count > 0) await Task.Delay(10, cancellationToken).ConfigureAwait(false);
                }
                Ail.UpdateTail();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            cancelled = true;
        }
        finally
        {
            string? unclean = null;
            try
            {
                await Cil.StopAsync().ConfigureAwait(false);
                await Ail.StopAsync().ConfigureAwait(false);
                unclean = cancelled ? "the close was cancelled"
                    : Cil.ShutdownError is { } e ? "shut down: " + e.Message
                    : Ail.Count > 0 ? $"{Ail.Count} items were not written home"
                    : null;
                try
                {
                    if (_closeLog is not null) await _closeLog(unclean is null).ConfigureAwait(false);
                }
                finally
                {
                    _ownedDevice?.Dispose();
                }
            }
            catch (Exception e) when (unclean is null)
            {
                unclean = "closing the log failed: " + e.Message;
                throw;
            }
            finally
            {
                JournalMetrics.Unregister(this);
                _pool.Reserve.EpisodeStarted = null;
                _diagnostics.Closed(Cil.DurableSequence, unclean);
                Volatile.Write(ref _state, StateClosed);
                _closed.TrySetResult();
            }
        }
        if (cancelled) throw new OperationCanceledException("the journal was closed without its unmount record: the close was cancelled", cancellationToken);
        Cil.ThrowIfShutdown();
    }

    /// <summary>Same as <see cref="CloseAsync"/> without a token.</summary>
    public ValueTask DisposeAsync() => CloseAsync(CancellationToken.None);

    /// <summary>Same as <see cref="CloseAsync"/> without a token, waiting for it (for <c>using</c>).</summary>
    public void Dispose() => CloseAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();

    private void ThrowIfNotOpen()
    {
        if (Volatile.Read(ref _state) != StateOpen) throw new JournalException("journal is closed");
        Cil.ThrowIfShutdown();
    }

    private void OnSpacePressure()
    {
        Ail.RequestPush();
        var cur = Cil.Current;
        if (!cur.IsEmpty) Cil.RequestPush(cur.Sequence);
    }

    private sealed class TransactionPolicy : PooledObjectPolicy<TransactionState>
    {
        public override TransactionState Create() => new();
        public override bool Return(TransactionState obj) => true;
    }
}
