using System.Text;
using Journal;
using Journal.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Snapshot.Catalog;
using Snapshot.Changes;
using Snapshot.Commit;
using Snapshot.Copy;
using Snapshot.Diagnostics;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Io;
using Snapshot.Memory;
using Snapshot.Metadata;
using Snapshot.Recovery;
using Snapshot.Storage;
using Snapshot.Sync;

namespace Snapshot;

/// <summary>
/// A copy-on-write snapshot store in a folder: an origin image, any number (up to 64) of persistent or transient
/// snapshots of it, each with its own COW file in the dm-snapshot persistent format, and one metadata journal shared by
/// all snapshots' exception metadata.
/// </summary>
/// <remarks>
/// <para>Folder layout: <c>origin.img</c> (the origin), <c>journal.log</c> (the metadata journal),
/// <c>&lt;name&gt;.cow</c> (one per snapshot), <c>store.sb</c> (superblock: geometry and snapshot list, two copies
/// written alternately; the home of the superblock log item, whose changes are committed through the journal). The
/// store holds an exclusive lock on its folder while it is open: one opener at a time.</para>
/// <para>The store is a thin facade over three parts: the snapshot catalog (<see cref="Catalog.SnapshotCatalog"/>: the
/// snapshot list, the superblock, create, delete, invalidate, merge, and the state lock), the data path
/// (<see cref="Io.DataPath"/>: reads, writes, tracked reads, pending exceptions, the copy engine) and the commit
/// pipeline (<see cref="Commit.CommitPipeline"/>: every snapshot's exceptions made durable in store-wide rounds). It
/// owns the devices, the journal and the I/O gate, and opens and closes the whole.</para>
/// <para>Every member is safe to call from many threads. I/O never blocks snapshot creation or deletion for longer
/// than the I/O in flight takes (they quiesce I/O: it finishes, new I/O waits, none is lost).</para>
/// </remarks>
public sealed partial class SnapshotStore : IAsyncDisposable, IDisposable
{
    /// <summary>File name of the origin image.</summary>
    public const string OriginFileName = "origin.img";

    /// <summary>File name of the metadata journal.</summary>
    public const string JournalFileName = "journal.log";

    /// <summary>File name of the superblock.</summary>
    public const string SuperblockFileName = "store.sb";

    /// <summary>Extension of COW files.</summary>
    public const string CowExtension = ".cow";

    /// <summary>Most snapshots in one store.</summary>
    public const int MaxSnapshots = Superblock.MaxSnapshots;

    /// <summary>Most bytes (UTF-8) in a snapshot name.</summary>
    public const int MaxNameBytes = SnapshotRecord.MaxNameBytes;

    private readonly StoreOptions _options;
    private readonly IDeviceProvider _provider;
    private readonly IDisposable _folderLock;
    private readonly BlockDevice _origin;
    private readonly BlockDevice _sbDevice;
    private readonly BlockDevice _logDevice;
    private readonly CowLayout _layout;
    private readonly OriginVolume _originVolume;

    // The I/O gate: shared by every read and write, exclusive for snapshot create, delete, merge and close (see
    // AsyncGate). The first lock in the store's lock order: the gate, the journal's log space, the superblock item lock,
    // the state lock, the leaves.
    private readonly AsyncGate _gate = new();
    private readonly SnapshotCatalog _catalog;
    private readonly DataPath _dataPath;
    private readonly ChangeTracker _changes;
    private CommitPipeline _pipeline = null!;

    /// <summary>The store's commit pipeline (tests and the benchmark).</summary>
    internal CommitPipeline Pipeline => _pipeline;
    private WriteBackKicker? _kicker;

    /// <summary>Metadata write-back rounds started by commits (journal mode) since open; for tests.</summary>
    internal long WriteBackRounds => _kicker?.Rounds ?? 0;
    private int _closed;

    // The metadata journal (null only while the store is being opened). Persistent snapshots in journal mode commit
    // their exceptions through it; its AIL writes the area segments home into the COW files.
    private MetadataJournal? _journal;

    private SnapshotStore(string folder, StoreOptions options, IDisposable folderLock, BlockDevice origin, BlockDevice sb,
        BlockDevice log, Superblock superblock)
    {
        Folder = folder;
        _options = options;
        Logger = options.LoggerFactory?.CreateLogger(LogCategory) ?? NullLogger.Instance;
        _provider = options.DeviceProvider;
        _folderLock = folderLock;
        _origin = origin;
        _sbDevice = sb;
        _logDevice = log;
        _layout = new CowLayout(superblock.ChunkSectors);
        OriginSectors = superblock.OriginSectors;
        ChunkSectors = superblock.ChunkSectors;
        _originVolume = new OriginVolume(this, superblock.OriginSectors);
        _catalog = new SnapshotCatalog(this, superblock);
        _dataPath = new DataPath(this, _catalog, _gate, _layout, origin, options);
        _changes = new ChangeTracker(this);
    }

    /// <summary>The store folder.</summary>
    public string Folder { get; }

    /// <summary>The category of the store's log messages (<see cref="StoreOptions.LoggerFactory"/>).</summary>
    public const string LogCategory = "Snapshot";

    /// <summary>Where the store logs (<see cref="StoreOptions.LoggerFactory"/>; nowhere by default).</summary>
    internal ILogger Logger { get; }

    /// <summary>Size of the origin (and of every snapshot) in sectors.</summary>
    public long OriginSectors { get; }

    /// <summary>Chunk size in sectors.</summary>
    public int ChunkSectors { get; }

    /// <summary>True when the journal was clean at open: the last close was clean and nothing was replayed.</summary>
    public bool LogClean { get; private set; } = true;

    /// <summary>The origin volume.</summary>
    public StoreVolume Origin => _originVolume;

    /// <summary>The options in force.</summary>
    public StoreOptions Options => _options;

    /// <summary>The snapshots, in creation order.</summary>
    public IReadOnlyList<StoreVolume> Snapshots => _catalog.Snapshots.Select(s => s.Volume!).ToArray();

    private string PathOf(string file) => Path.Combine(Folder, file);

    internal string CowPathOf(string name) => PathOf(name + CowExtension);

    internal CowLayout Layout => _layout;
    internal IDeviceProvider Provider => _provider;
    internal AsyncGate Gate => _gate;
    internal BlockDevice SuperblockDevice => _sbDevice;
    internal CopyThrottle Throttle => _dataPath.Throttle;
    internal DataPath DataPath => _dataPath;
    internal SnapshotCatalog Catalog => _catalog;
    internal object StateLock => _catalog.StateLock;
    internal MetadataJournal? Journal => _journal;

    /// <summary>How the commit pipeline commits exceptions (the journal, or direct area writes).</summary>
    internal IMetadataCommitter Committer => _pipeline.Committer;

    /// <summary>
    /// Starts the commit pipeline and the copy engine once the journal is open: the store owns the journal's write-back
    /// kicker and hands it to the journal committer.
    /// </summary>
    private void StartPipeline()
    {
        IMetadataCommitter committer;
        if (_options.MetadataMode == MetadataMode.Journal)
        {
            _kicker = new WriteBackKicker(_journal!);
            committer = new JournalCommitter(_journal!, _kicker, _logDevice);
        }
        else
        {
            committer = new DirectAreaCommitter();
        }
        _pipeline = new CommitPipeline(committer);
        _dataPath.Attach(new CopyEngine(_origin, _layout, _pipeline, _dataPath, _dataPath.PlanPool, Logger, Folder));
    }

    /// <summary>Commit rounds, their exceptions, COW flushes and log forces since open.</summary>
    public CommitPipelineStatistics CommitStatistics => _pipeline.Statistics;
    internal BlockDevice OriginDevice => _origin;
    internal int GateSharedHolders => _gate.SharedHolders;
    internal int GateExclusiveWaiters => _gate.ExclusiveWaiters;

    /// <summary>Operations issued to the journal's log device since open.</summary>
    internal DeviceCounters LogDeviceCounters => _logDevice.Counters;

    /// <summary>Bytes written to every snapshot's COW file since open (data, metadata, headers).</summary>
    internal long CowBytesWritten => _catalog.CowBytesWritten;

    /// <summary>Copy jobs run and chunk copies written since open.</summary>
    internal (long Jobs, long ChunksCopied) CopyCounters => (_dataPath.Engine.Jobs, _dataPath.Engine.ChunksCopied);

    /// <summary>
    /// Creates a store in <paramref name="folder"/> (created if needed; it must not already hold a store). Options are
    /// validated before anything is created.
    /// </summary>
    public static async ValueTask<SnapshotStore> CreateAsync(string folder, StoreOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(options);
        options.ValidateForCreate(folder);
        options.ApplyThreadPoolMinimum();
        var provider = options.DeviceProvider;
        if (provider.Exists(Path.Combine(folder, SuperblockFileName)))
            throw new JournalException($"{Path.Combine(folder, SuperblockFileName)}: a snapshot store already exists in {folder}");
        if (!provider.IsEmptyOrMissing(folder))
            throw new JournalException($"{folder}: is not empty: a store is created in a new or empty folder (it would treat files there as its own)");
        long need = (options.OriginSectors + options.LogBlocks + Superblock.FileSectors) * BlockDevice.SectorSize;
        if (provider.AvailableBytes(folder) is { } free && free < need + CreateSlackBytes)
            throw new DeviceFullException(folder, 0, $"not enough space for the store: it needs {need + CreateSlackBytes} bytes (origin {options.OriginSectors * BlockDevice.SectorSize}, log {(long)options.LogBlocks * BlockDevice.SectorSize}, superblock {Superblock.FileSectors * BlockDevice.SectorSize}, and {CreateSlackBytes} for the first COW files and the folder), the file system has {free}");
        string staging = provider.BeginCreate(folder);
        bool inPlace = staging == folder;
        SnapshotStore? store = null;
        try
        {
            store = await BuildAsync(staging, inPlace ? options : options.WithoutLogging(), cancellationToken).ConfigureAwait(false);
            if (inPlace) return store.Started();
            // Built aside: closed cleanly, put in place in one rename, and opened where it now is.
            await store.CloseAsync(cancellationToken).ConfigureAwait(false);
            store = null;
            provider.CompleteCreate(staging, folder);
            var opened = await OpenAsync(folder, options, cancellationToken).ConfigureAwait(false);
            opened.RecoveryReport = null; // a store just created was not recovered (its reopen read a clean, empty log)
            return opened;
        }
        catch
        {
            if (store is not null) await store.AbandonAsync().ConfigureAwait(false);
            provider.AbandonCreate(staging);
            throw;
        }
    }

    /// <summary>Free space a create wants beyond the store's files (the first COW files, the folder's own blocks).</summary>
    private const long CreateSlackBytes = 1 << 20;

    /// <summary>Makes the store's files in <paramref name="folder"/> (which holds nothing) and starts it there.</summary>
    private static async ValueTask<SnapshotStore> BuildAsync(string folder, StoreOptions options, CancellationToken cancellationToken)
    {
        var provider = options.DeviceProvider;
        provider.EnsureFolder(folder);
        var folderLock = provider.Lock(folder);
        var created = new List<BlockDevice>();
        try
        {
            string sbPath = Path.Combine(folder, SuperblockFileName);
            var origin = provider.Create(Path.Combine(folder, OriginFileName), options.OriginSectors);
            created.Add(origin);
            var log = provider.Create(Path.Combine(folder, JournalFileName), options.LogBlocks);
            created.Add(log);
            var sbDev = provider.Create(sbPath, Superblock.FileSectors);
            created.Add(sbDev);
            var sb = new Superblock(1, options.OriginSectors, options.ChunkSectors, 1, []) { StoreId = options.StoreId is { } fixedId and not 0 ? fixedId : SnapshotCatalog.NewStoreId() };
            await sb.WriteAsync(sbDev, cancellationToken).ConfigureAwait(false);
            var store = new SnapshotStore(folder, options, folderLock, origin, sbDev, log, sb);
            store._journal = StoreJournal.Create(log, options.LoggerFactory, folder);
            store.StartPipeline();
            return store;
        }
        catch
        {
            foreach (var d in created) d.Dispose();
            folderLock.Dispose();
            throw;
        }
    }

    /// <summary>Releases everything of a store that failed to be made, writing nothing more.</summary>
    private async ValueTask AbandonAsync()
    {
        Interlocked.Exchange(ref _closed, 1);
        SnapshotMetrics.Stores.Remove(this);
        if (_pipeline is not null) await _pipeline.StopAsync().ConfigureAwait(false);
        if (_journal is { } j) { try { await j.CloseAsync().ConfigureAwait(false); } catch (Exception e) when (e is IOException or JournalException) { } }
        _catalog.DisposeSnapshotStores();
        _origin.Dispose();
        _logDevice.Dispose();
        _sbDevice.Dispose();
        _folderLock.Dispose();
    }

    /// <summary>
    /// Opens the store in <paramref name="folder"/>: takes its lock (a second opener gets
    /// <see cref="StoreInUseException"/> at once), reads the superblock, replays the journal if the last close was not
    /// clean, and loads every snapshot's exceptions. Only the per-open options of <paramref name="options"/> are used.
    /// </summary>
    public static async ValueTask<SnapshotStore> OpenAsync(string folder, StoreOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(folder);
        options ??= new StoreOptions();
        options.ValidateForOpen(folder);
        options.ApplyThreadPoolMinimum();
        ReadOnlyOverlayProvider? overlay = null;
        if (options.ReadOnly)
        {
            // Every file read-only; whatever the open writes (a replay, a stamp) stays in memory and is forgotten.
            var under = options.DeviceProvider;
            overlay = under is FileDeviceProvider ? ReadOnlyOverlayProvider.OverFiles(sharedLock: true)
                : new ReadOnlyOverlayProvider(under, under.Open, sharedLock: true);
            options = options.WithProvider(overlay);
        }
        var provider = options.DeviceProvider;
        string sbPath = Path.Combine(folder, SuperblockFileName);
        if (!provider.Exists(sbPath)) throw new StoreNotFoundException(folder, sbPath);
        var folderLock = provider.Lock(folder);
        var opened = new List<BlockDevice>();
        SnapshotStore? store = null;
        try
        {
            var sbDev = provider.Open(sbPath);
            opened.Add(sbDev);
            var sb = Superblock.Read(sbDev);
            var origin = provider.Open(Path.Combine(folder, OriginFileName));
            opened.Add(origin);
            // The store makes the origin at exactly the superblock's size and never resizes it: a file of another size
            // means a superblock or an origin that is not this store's (a smaller size would have snapshots' chunks
            // past the origin's end read as damage and invalidated for good).
            if (origin.SectorCount != sb.OriginSectors)
                throw new JournalException($"{origin.Name}: origin is {origin.SectorCount} sectors, the superblock says {sb.OriginSectors}");
            var log = provider.Open(Path.Combine(folder, JournalFileName));
            opened.Add(log);
            store = new SnapshotStore(folder, options, folderLock, origin, sbDev, log, sb) { _overlay = overlay };
            // Recovery reads the whole log and may write home copies: on a worker, cancellable until the journal opens.
            await Task.Run(() => store.OpenJournal(cancellationToken), cancellationToken).ConfigureAwait(false);
            store.StartPipeline();
            await store._catalog.LoadSnapshotsAsync(cancellationToken).ConfigureAwait(false);
            // After a crash the last session's files changed with no stamp at its close: copies taken then are told
            // apart from now on.
            if (!store.IsReadOnly && !store.LogClean) await store._catalog.AdvanceCowStampsAsync(everyFile: true, cancellationToken).ConfigureAwait(false);
            return store.Started();
        }
        catch
        {
            if (store?._pipeline is { } pipeline) await pipeline.StopAsync().ConfigureAwait(false);
            if (store?._journal is { } j) await j.CloseAsync().ConfigureAwait(false);
            if (store is not null) store._catalog.DisposeSnapshotStores();
            foreach (var d in opened) d.Dispose();
            folderLock.Dispose();
            overlay?.CloseFiles();
            throw;
        }
    }

    // Set once the store is open for use (reported to the meter, its opening logged); a store built aside is not.
    private bool _started;

    // The read-only open's overlay (null for a normal open): its real files are closed with the store.
    private ReadOnlyOverlayProvider? _overlay;

    /// <summary>True when the store was opened read-only (<see cref="StoreOptions.ReadOnly"/>).</summary>
    public bool IsReadOnly => _overlay is not null;

    /// <summary>
    /// True while a snapshot is unavailable (<see cref="CowUnreadablePolicy.KeepSnapshot"/>): origin writes and merges are
    /// refused with <see cref="SnapshotUnavailableException"/>, and the NBD server serves the origin read-only.
    /// </summary>
    public bool OriginRefusesWrites => _catalog.Unavailable is not null;

    /// <summary>Refuses <paramref name="what"/> on a store opened read-only.</summary>
    internal void ThrowIfReadOnly(string what)
    {
        if (_overlay is not null) throw StoreReadOnlyException.OpenedReadOnly(Folder, what);
    }

    /// <summary>
    /// Opens the metadata journal after any stop: cases 1 to 9 of <see cref="StoreRecovery"/> (the home superblock, one
    /// scan of the log, the superblock replayed, then the segments of the snapshots it lists, homes made durable, the
    /// journal opened for writing). Leaves the replayed superblock for the catalog to load.
    /// </summary>
    private void OpenJournal(CancellationToken cancellationToken)
    {
        var recovered = StoreRecovery.Open(_provider, _sbDevice, _logDevice, _layout, CowPathOf, _options.LoggerFactory, Folder,
            _options.CowUnreadablePolicy == CowUnreadablePolicy.KeepSnapshot, cancellationToken);
        _journal = recovered.Journal;
        RecoveryReport = recovered.Report;
        LogClean = recovered.Report.Clean;
        _catalog.Recovered(recovered.Superblock);
    }

    /// <summary>
    /// The store is open for use: it reports to the <c>Snapshot</c> meter from now until its close, and says so in its
    /// log (with what the journal's replay did, when there was one).
    /// </summary>
    private SnapshotStore Started()
    {
        _started = true;
        SnapshotMetrics.Add(this);
        if (RecoveryReport is { Clean: false } r)
            SnapshotLog.Replayed(Logger, Folder, r.Checkpoints, r.ItemsApplied, r.TornHead ? $"; a torn write at the head was discarded ({r.DiscardedBlocks} blocks)" : "");
        if (Logger.IsEnabled(LogLevel.Information))
            SnapshotLog.Opened(Logger, Folder, _catalog.Snapshots.Length, OriginSectors * BlockDevice.SectorSize, (long)ChunkSectors * BlockDevice.SectorSize, IsReadOnly ? ", read-only" : "");
        return this;
    }

    /// <summary>
    /// What the journal's recovery found and did when the store was opened (records, checkpoints, item copies applied, a
    /// torn head cut off, the time it took); null for a store just created.
    /// </summary>
    public StoreRecoveryReport? RecoveryReport { get; private set; }

    internal static string ReasonText(InvalidReasonCode code) => code switch
    {
        InvalidReasonCode.CowFull => "COW file is full",
        InvalidReasonCode.IoError => "I/O error on the COW file",
        InvalidReasonCode.TransientLost => "transient snapshot: its contents were not kept when the store was closed",
        InvalidReasonCode.HeaderInvalid => "the COW header is marked invalid",
        InvalidReasonCode.LogReset => "the journal was reset (jreplay zero-log): exceptions not yet written home were lost",
        InvalidReasonCode.CowMissing => "COW file is missing",
        InvalidReasonCode.CowDamaged => "COW file is damaged",
        _ => "invalid",
    };

    /// <summary>
    /// Validates a snapshot name: 1 to 64 bytes of UTF-8, letters, digits, '.', '_' and '-' only, not starting with
    /// '.', not "origin". Throws <see cref="JournalArgumentException"/>.
    /// </summary>
    public static void ValidateSnapshotName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (SnapshotRecord.NameProblem(name) is { } problem) throw new SnapshotArgumentException(problem);
    }

    /// <summary>
    /// True when <paramref name="path"/> is one of this store's files (or inside its folder): the origin, the journal,
    /// the superblock, the lock, a COW file, or another name for one of them (a hard or symbolic link). Tools refuse to
    /// write their output there.
    /// </summary>
    public bool IsStorePath(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = Path.GetFullPath(path);
        string folder = Path.GetFullPath(Folder).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        if (full.StartsWith(folder, StringComparison.Ordinal)) return true;
        if (FileBlockDevice.GetFileIdentity(full) is not { } target) return false;
        if (FileBlockDevice.GetFileIdentity(Folder) is { } dir && dir == target) return true;
        foreach (var f in _provider.List(Folder, ""))
            if (FileBlockDevice.GetFileIdentity(f) is { } id && id == target) return true;
        return false;
    }

    /// <summary>COW size that holds a full copy of the origin (header, every area, every chunk), in sectors.</summary>
    public long FullCopyCowSectors
    {
        get
        {
            long chunks = OriginSectors / ChunkSectors;
            long areas = (chunks + _layout.ExceptionsPerArea - 1) / _layout.ExceptionsPerArea + 1;
            // + the creation-marks chunks of changed-block tracking (ChangeMarks), which take data chunks from chunk 2.
            return (chunks + areas + CowLayout.HeaderChunks + 1 + ChangeMarks.ChunksFor(ChunkSectors)) * ChunkSectors;
        }
    }

    /// <summary>The snapshot named <paramref name="name"/>; throws <see cref="JournalArgumentException"/> if there is none.</summary>
    public StoreVolume GetSnapshot(string name) => _catalog.Find(name).Volume!;

    /// <summary>
    /// Creates a snapshot of the origin as it is now. Its COW file is made first; then I/O is quiesced for the commit:
    /// writes in flight finish first (they belong before the snapshot), writes issued meanwhile wait and land after it.
    /// </summary>
    public ValueTask<StoreVolume> CreateSnapshotAsync(string name, SnapshotOptions? options = null, CancellationToken cancellationToken = default) =>
        _catalog.CreateSnapshotAsync(name, options, cancellationToken);

    /// <summary>Deletes a snapshot and its COW file. I/O is quiesced for the duration (none is lost).</summary>
    public ValueTask DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default) =>
        _catalog.DeleteSnapshotAsync(name, cancellationToken);

    /// <summary>
    /// Merges snapshot <paramref name="name"/> into the origin and deletes it (the steps and crash guarantees are in
    /// docs/snapshot.md and <see cref="Catalog.SnapshotCatalog"/>). Origin and snapshot I/O wait while it runs. Runs again
    /// from the start after an interrupted or failed merge. <paramref name="progress"/> gets (chunks done, chunks to
    /// merge) after each chunk.
    /// </summary>
    /// <exception cref="JournalArgumentException">No such snapshot, a transient or invalid one, or another merge unfinished.</exception>
    /// <exception cref="JournalException">The merge failed (one line: the COW file, the snapshot and the error); run it again.</exception>
    public ValueTask MergeSnapshotAsync(string name, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default) =>
        _catalog.MergeSnapshotAsync(name, progress, cancellationToken);

    /// <summary>The volume named <paramref name="name"/>: <c>origin</c> or a snapshot.</summary>
    public StoreVolume GetVolume(string name) => name == "origin" ? Origin : GetSnapshot(name);

    /// <summary>Status of every snapshot, the log, the copy engine and the pools.</summary>
    public StoreStatus GetStatus()
    {
        var list = _catalog.Statuses();
        return new StoreStatus(Folder, OriginSectors, ChunkSectors, LogClean, list, _options.MaxInFlightCopies,
            _dataPath.Throttle.InFlight, _dataPath.Throttle.Peak, _dataPath.Throttle.Waits, _dataPath.PendingPool.Statistics, _dataPath.PlanPool.Statistics)
        {
            PendingCopyBound = _dataPath.Throttle.PendingBound == int.MaxValue ? 0 : _dataPath.Throttle.PendingBound,
            CopiesPending = _dataPath.Throttle.Pending,
            PeakCopiesPending = _dataPath.Throttle.PendingPeak,
            DeferredWrites = _dataPath.DeferredWrites,
            DeferredWritesPending = _dataPath.DeferredWritesPending,
            DeferredBytesHeld = _dataPath.DeferredBytesHeld,
            DeferredBytesKept = _dataPath.DeferredBytesKept,
            Commits = _pipeline?.Statistics,
        };
    }

    /// <summary>
    /// Makes every write that returned before the call durable: origin, snapshot data and metadata. Concurrent callers
    /// share the device flushes.
    /// </summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfClosed();
        var snaps = _catalog.Snapshots;
        var tasks = new List<Task> { _dataPath.FlushOriginAsync(cancellationToken).AsTask() };
        foreach (var s in snaps)
            if (s.IsValid && s.Store is { } st) tasks.Add(st.FlushDataAsync(cancellationToken).AsTask());
        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    /// <summary>
    /// Closes the store cleanly: waits for I/O in flight, writes all metadata home, flushes every file, marks the log
    /// clean, releases the lock. Transient snapshots lose their contents. Calling it again (or at the same time) does
    /// nothing more. Whatever happens — an I/O error, a cancelled <paramref name="cancellationToken"/> — every device
    /// and the lock are released: a close that could not finish cleanly leaves the journal to replay at the next open,
    /// and throws.
    /// </summary>
    public async ValueTask CloseAsync(CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _closed) != 0) return;
        // Why we wait: I/O in flight finishes first (its writes belong to the store); new I/O is refused once closed.
        await _gate.EnterExclusiveAsync().ConfigureAwait(false);
        try
        {
            if (Interlocked.Exchange(ref _closed, 1) != 0) return;
            SnapshotMetrics.Stores.Remove(this);
            var snaps = _catalog.Snapshots;
            bool flushed = false;
            bool clean = false;
            try
            {
                foreach (var s in snaps)
                {
                    if (s.Store is null) continue;
                    await s.Store.FlushDataAsync(cancellationToken).ConfigureAwait(false);
                }
                await _origin.FlushAsync(cancellationToken).ConfigureAwait(false);
                // A deferred write that failed after it returned: everything else is flushed, but the close reports it.
                _dataPath.ThrowIfDeferredFailed();
                flushed = true;
                // Copies of the COW files taken before are told apart from the files from now on, for the files that
                // changed in this session (a file that did not change leaves every copy of it current).
                if (!IsReadOnly) await _catalog.AdvanceCowStampsAsync(everyFile: false, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                // Writes every metadata segment home (the AIL flushes the COW files) and marks the log clean; a
                // cancelled token closes the journal without its unmount record (it replays at the next open).
                await _pipeline.StopAsync().ConfigureAwait(false);
                try
                {
                    if (_kicker is not null) await _kicker.DrainAsync().ConfigureAwait(false);
                }
                finally
                {
                    try
                    {
                        // Only a store whose writes all reached stable storage may mark its log clean.
                        if (_journal is not null && flushed) await _journal.CloseAsync(cancellationToken).ConfigureAwait(false);
                        else if (_journal is not null) await CloseJournalUncleanAsync(_journal).ConfigureAwait(false);
                        clean = flushed;
                    }
                    finally
                    {
                        _catalog.DisposeSnapshotStores();
                        foreach (var s in snaps)
                            if (s.Kind == SnapshotKind.Transient) _catalog.RemoveOwnCowFile(s.CowPath, s.Id, allowDamaged: false, CowHeader.KindTransient);
                        _origin.Dispose();
                        _logDevice.Dispose();
                        _sbDevice.Dispose();
                        _folderLock.Dispose();
                        _overlay?.CloseFiles();
                        if (_started) SnapshotLog.Closed(Logger, Folder, clean || IsReadOnly ? "" : "; not every write reached stable storage: the journal replays at the next open");
                    }
                }
            }
        }
        finally
        {
            _gate.ExitExclusive();
        }
    }

    /// <summary>Closes the journal without its unmount record (the next open replays it), keeping the caller's error.</summary>
    private static async ValueTask CloseJournalUncleanAsync(MetadataJournal journal)
    {
        try
        {
            await journal.CloseAsync(new CancellationToken(canceled: true)).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Expected: a cancelled close releases the log and writes no unmount record.
        }
    }

    /// <summary>Closes the store as <see cref="CloseAsync"/> does, waiting for it (for <c>using</c>).</summary>
    public void Dispose() => CloseAsync().AsTask().GetAwaiter().GetResult();

    internal ValueTask OriginReadAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _dataPath.OriginReadAsync(sector, buffer, cancellationToken);

    internal ValueTask OriginWriteAsync(long sector, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly("writing");
        _catalog.ThrowIfUnavailable("writing the origin");
        return _dataPath.OriginWriteAsync(sector, data, fua, cancellationToken);
    }

    internal ValueTask SnapshotReadAsync(SnapshotState st, long sector, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _dataPath.SnapshotReadAsync(st, sector, buffer, cancellationToken);

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask SnapshotWriteAsync(SnapshotState st, long sector, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly("writing");
        // Changed-block tracking: the snapshot's written flag is durable before its first user write starts, and the
        // count of finished writes keys the change-map cache.
        if (!st.WrittenDurable) await _changes.MarkWrittenAsync(st, cancellationToken).ConfigureAwait(false);
        try
        {
            await _dataPath.SnapshotWriteAsync(st, sector, data, fua, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Increment(ref st.UserWrites);
        }
    }

    /// <summary>See <see cref="Io.DataPath.SubmitOriginWrite"/> (the write-storm benchmark).</summary>
    internal Task SubmitOriginWrite(long sector, ReadOnlyMemory<byte> data, out Task completion) => _dataPath.SubmitOriginWrite(sector, data, out completion);

    /// <summary>Invalidates a snapshot (see <see cref="SnapshotCatalog.InvalidateAsync"/>).</summary>
    internal Task InvalidateAsync(SnapshotState st, InvalidReasonCode code) => _catalog.InvalidateAsync(st, code);

    /// <summary>Commits the superblock with the current snapshot list and forces it (see <see cref="SnapshotCatalog.CommitSuperblockAsync"/>).</summary>
    internal ValueTask CommitSuperblockAsync(CancellationToken cancellationToken = default) => _catalog.CommitSuperblockAsync(cancellationToken);

    /// <summary>The superblock log item (tests inspect its home writes).</summary>
    internal SuperblockItem SuperblockLogItem => _catalog.SuperblockLogItem;

    /// <summary>Same as <see cref="CloseAsync"/>.</summary>
    public ValueTask DisposeAsync() => CloseAsync();

    /// <summary>Whether the store is closed (set by a close once it holds the gate exclusively).</summary>
    internal bool IsClosed => Volatile.Read(ref _closed) != 0;

    internal void ThrowIfClosed()
    {
        if (Volatile.Read(ref _closed) != 0) throw new JournalException($"{Folder}: store is closed");
    }

    /// <inheritdoc/>
    public override string ToString() => $"SnapshotStore({Folder}, origin {OriginSectors} sectors, chunk {ChunkSectors} sectors, {_catalog.Snapshots.Length} snapshots)";
}
