using System.Text;
using Journal;
using Journal.Storage;
using Snapshot.Changes;
using Snapshot.Commit;
using Snapshot.Copy;
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
/// written alternately; the home of the superblock log item, whose changes are committed through the journal), <c>store.lock</c> (held exclusively while open: one opener at a time).</para>
/// <para>Every member is safe to call from many threads. I/O never blocks snapshot creation or deletion for longer
/// than the I/O in flight takes (they quiesce I/O: it finishes, new I/O waits, none is lost).</para>
/// </remarks>
public sealed partial class SnapshotStore : IAsyncDisposable
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
    private readonly AsyncGate _gate = new();
    private readonly DataPath _dataPath;
    private readonly ChangeTracker _changes;
    private CommitPipeline _pipeline = null!;
    private WriteBackKicker? _kicker;

    // _stateLock protects: _snapshots (the array is replaced, never mutated, and only while the gate is held
    // exclusively), every SnapshotState's Complete/Pending tables and validity, the data path's tracked reads, _superblock.
    // Held for in-memory work only: never across an await, never while doing I/O or waiting. Leaf locks that may be
    // taken under it: the pools', the throttle's, the exception stores' allocation locks.
    private readonly object _stateLock = new();
    private SnapshotState[] _snapshots = [];
    private Superblock _superblock;

    // The snapshot whose merge into the origin is unfinished, or null (at most one). Written under _stateLock while the
    // gate is held exclusively; the data path reads it under the gate (shared), so it never changes under an I/O.
    private SnapshotState? _merging;

    // The superblock as a journal log item; its home is store.sb. Its Lock serialises superblock changes from the change
    // to the end of the commit (see CommitSuperblockAsync): taken inside the gate (shared or exclusive), after the
    // transaction's log space is reserved, never the other way round; takes nothing else but _stateLock briefly.
    private SuperblockItem _sbItem;

    private int _closed;

    // The metadata journal (null only while the store is being opened). Persistent snapshots in journal mode commit
    // their exceptions through it; its AIL writes the area segments home into the COW files.
    private MetadataJournal? _journal;

    // Exception stores of deleted snapshots: their COW files are removed, but their devices stay open until the
    // journal is closed, because the AIL may be writing one of their segments at the moment of the delete.
    private readonly List<ExceptionStore> _graveyard = new();

    private SnapshotStore(string folder, StoreOptions options, IDisposable folderLock, BlockDevice origin, BlockDevice sb,
        BlockDevice log, Superblock superblock)
    {
        Folder = folder;
        _options = options;
        _provider = options.DeviceProvider;
        _folderLock = folderLock;
        _origin = origin;
        _sbDevice = sb;
        _logDevice = log;
        _superblock = superblock;
        _sbItem = new SuperblockItem(sb, superblock);
        _layout = new CowLayout(superblock.ChunkSectors);
        _originVolume = new OriginVolume(this, superblock.OriginSectors);
        _dataPath = new DataPath(this, _stateLock, _gate, _layout, origin, options);
        _changes = new ChangeTracker(this);
    }

    /// <summary>The store folder.</summary>
    public string Folder { get; }

    /// <summary>Size of the origin (and of every snapshot) in sectors.</summary>
    public long OriginSectors => _superblock.OriginSectors;

    /// <summary>Chunk size in sectors.</summary>
    public int ChunkSectors => _superblock.ChunkSectors;

    /// <summary>True when the journal was clean at open: the last close was clean and nothing was replayed.</summary>
    public bool LogClean { get; private set; } = true;

    /// <summary>The origin volume.</summary>
    public StoreVolume Origin => _originVolume;

    /// <summary>The options in force.</summary>
    public StoreOptions Options => _options;

    /// <summary>The snapshots, in creation order.</summary>
    public IReadOnlyList<StoreVolume> Snapshots
    {
        get { lock (_stateLock) return _snapshots.Select(s => s.Volume!).ToArray(); }
    }

    private string PathOf(string file) => Path.Combine(Folder, file);

    internal string CowPathOf(string name) => PathOf(name + CowExtension);

    internal CowLayout Layout => _layout;
    internal CopyThrottle Throttle => _dataPath.Throttle;
    internal DataPath DataPath => _dataPath;

    /// <summary>The snapshot list: read under the state lock (the data path's look at a run).</summary>
    internal SnapshotState[] SnapshotsUnsafe => _snapshots;

    /// <summary>The snapshot whose merge is unfinished: read under the state lock, or under the gate (it changes only under both).</summary>
    internal SnapshotState? MergingUnsafe => Volatile.Read(ref _merging);
    internal object StateLock => _stateLock;
    /// <summary>The I/O gate (changed-block tracking holds it shared to commit a snapshot's written flag).</summary>
    internal AsyncGate Gate => _gate;
    internal MetadataJournal? Journal => _journal;
    /// <summary>How the commit pipeline commits exceptions (the journal, or direct area writes).</summary>
    private IMetadataCommitter Committer => _pipeline.Committer;

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
            committer = new JournalCommitter(_journal!, _kicker);
        }
        else
        {
            committer = new DirectAreaCommitter();
        }
        _pipeline = new CommitPipeline(committer);
        _dataPath.Attach(new CopyEngine(_origin, _layout, _pipeline, _dataPath, _dataPath.PlanPool));
    }

    /// <summary>Commit rounds, their exceptions, COW flushes and log forces since open.</summary>
    public CommitPipelineStatistics CommitStatistics => _pipeline.Statistics;
    internal BlockDevice OriginDevice => _origin;
    internal int GateSharedHolders => _gate.SharedHolders;

    /// <summary>Operations issued to the journal's log device since open.</summary>
    internal DeviceCounters LogDeviceCounters => _logDevice.Counters;

    /// <summary>Bytes written to every snapshot's COW file since open (data, metadata, headers).</summary>
    internal long CowBytesWritten
    {
        get
        {
            lock (_stateLock) return _snapshots.Sum(s => s.Store?.Cow.Counters.BytesWritten ?? 0) + _graveyard.Sum(g => g.Cow.Counters.BytesWritten);
        }
    }

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
        var provider = options.DeviceProvider;
        if (provider.Exists(Path.Combine(folder, SuperblockFileName)))
            throw new JournalException($"{Path.Combine(folder, SuperblockFileName)}: a snapshot store already exists in {folder}");
        if (!provider.IsEmptyOrMissing(folder))
            throw new JournalException($"{folder}: is not empty: a store is created in a new or empty folder (it would treat files there as its own)");
        long need = (options.OriginSectors + options.LogBlocks + Superblock.FileSectors) * BlockDevice.SectorSize;
        if (provider.AvailableBytes(folder) is { } free && free < need + CreateSlackBytes)
            throw new DeviceFullException(folder, 0, $"not enough space for the store: it needs {need} bytes (origin {options.OriginSectors * BlockDevice.SectorSize}, log {(long)options.LogBlocks * BlockDevice.SectorSize}), the file system has {free}");
        string staging = provider.BeginCreate(folder);
        bool inPlace = staging == folder;
        SnapshotStore? store = null;
        try
        {
            store = await BuildAsync(staging, options, cancellationToken).ConfigureAwait(false);
            if (inPlace) return store;
            // Built aside: closed cleanly, put in place in one rename, and opened where it now is.
            await store.CloseAsync(cancellationToken).ConfigureAwait(false);
            store = null;
            provider.CompleteCreate(staging, folder);
            return await OpenAsync(folder, options, cancellationToken).ConfigureAwait(false);
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
            var sb = new Superblock(1, options.OriginSectors, options.ChunkSectors, 1, []) { StoreId = options.StoreId is { } fixedId and not 0 ? fixedId : NewStoreId() };
            await sb.WriteAsync(sbDev, cancellationToken).ConfigureAwait(false);
            var store = new SnapshotStore(folder, options, folderLock, origin, sbDev, log, sb);
            store._journal = StoreJournal.Create(log);
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
        if (_pipeline is not null) await _pipeline.StopAsync().ConfigureAwait(false);
        if (_journal is { } j) { try { await j.CloseAsync().ConfigureAwait(false); } catch (Exception e) when (e is IOException or JournalException) { } }
        DisposeSnapshotStores();
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
            if (origin.SectorCount < sb.OriginSectors)
                throw new JournalException($"{origin.Name}: origin is {origin.SectorCount} sectors, the superblock says {sb.OriginSectors}");
            var log = provider.Open(Path.Combine(folder, JournalFileName));
            opened.Add(log);
            store = new SnapshotStore(folder, options, folderLock, origin, sbDev, log, sb);
            store.OpenJournal();
            store.StartPipeline();
            await store.LoadSnapshotsAsync(cancellationToken).ConfigureAwait(false);
            return store;
        }
        catch
        {
            if (store?._pipeline is { } pipeline) await pipeline.StopAsync().ConfigureAwait(false);
            if (store?._journal is { } j) await j.CloseAsync().ConfigureAwait(false);
            if (store is not null) store.DisposeSnapshotStores();
            foreach (var d in opened) d.Dispose();
            folderLock.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens the metadata journal after any stop: cases 1 to 9 of <see cref="StoreRecovery"/> (the home superblock, one
    /// scan of the log, the superblock replayed, then the segments of the snapshots it lists, homes made durable, the
    /// journal opened for writing). Leaves the replayed superblock for <see cref="LoadSnapshotsAsync"/>.
    /// </summary>
    private void OpenJournal()
    {
        var recovered = StoreRecovery.Open(_provider, _sbDevice, _logDevice, _layout, CowPathOf);
        _journal = recovered.Journal;
        RecoveryReport = recovered.Report;
        LogClean = recovered.Report.Clean;
        lock (_stateLock) _superblock = recovered.Superblock;
        _sbItem = new SuperblockItem(_sbDevice, _superblock);
    }

    /// <summary>What the journal's recovery did when the store was opened (null for a store just created).</summary>
    internal StoreRecoveryReport? RecoveryReport { get; private set; }

    private async ValueTask LoadSnapshotsAsync(CancellationToken cancellationToken)
    {
        var sb = _superblock;
        long originChunks = sb.OriginSectors / sb.ChunkSectors;
        bool rewrite = false;
        var states = new List<SnapshotState>();
        foreach (var rec in sb.Snapshots)
        {
            var kind = rec.Kind == SnapshotKindCode.Persistent ? SnapshotKind.Persistent : SnapshotKind.Transient;
            var st = new SnapshotState(rec.Name, rec.Id, kind, rec.CowSectors, CowPathOf(rec.Name));
            st.Volume = new SnapshotVolume(this, st, sb.OriginSectors);
            st.Written = st.WrittenDurable = (rec.Flags & SnapshotRecordFlags.Written) != 0; // changed-block tracking
            states.Add(st);
            if (rec.State == SnapshotStateCode.Invalid)
            {
                st.InvalidCode = rec.Reason;
                st.InvalidReason = ReasonText(rec.Reason);
            }
            if (rec.State == SnapshotStateCode.Merging)
            {
                // A merge was interrupted: the origin reads as this snapshot until a merge finishes it.
                st.Merging = true;
                _merging = st;
            }
            if (kind == SnapshotKind.Transient)
            {
                // A transient snapshot's exceptions were only in memory: after a close (or crash) it has no contents.
                RemoveOwnCowFile(st.CowPath, st.Id, allowDamaged: false);
                if (st.IsValid)
                {
                    st.InvalidCode = InvalidReasonCode.TransientLost;
                    st.InvalidReason = ReasonText(InvalidReasonCode.TransientLost);
                    rewrite = true;
                }
                continue;
            }
            if (!st.IsValid) continue; // an invalid snapshot is never read again; its COW file stays as it is
            try
            {
                OpenCowFile(st, rec, originChunks, ref rewrite);
            }
            catch (Exception e) when (!st.Merging && e is IOException or JournalException)
            {
                // One damaged, truncated or missing COW file costs that snapshot alone: it is invalidated (recorded in the
                // superblock, so the origin may change without it from now on), and the origin and the other snapshots
                // open. A snapshot being merged is the exception: the origin reads through it, so its loss is an error.
                st.Store?.Dispose();
                st.Store = null;
                st.Complete.Clear();
                var code = e is DeviceOpenException { Error: DeviceOpenError.Missing } ? InvalidReasonCode.CowMissing : InvalidReasonCode.CowDamaged;
                st.InvalidCode = code;
                st.InvalidReason = $"{ReasonText(code)}: {ErrorText(e)}";
                rewrite = true;
            }
        }
        lock (_stateLock) _snapshots = states.ToArray();
        // COW files no snapshot owns: left by a create or delete that a crash interrupted. Only files whose header carries
        // this store's id (and a snapshot id the superblock does not list) are removed; anything else is left alone. The
        // superblock here is the newest the store has (a fallback to an older copy is refused unless the journal brings it
        // up to date), so no file is removed on the word of an older copy.
        var owned = new HashSet<string>(states.Select(s => Path.GetFullPath(s.CowPath)), StringComparer.Ordinal);
        var listed = states.Select(s => s.Id).ToHashSet();
        foreach (var f in _provider.List(Folder, CowExtension))
        {
            if (owned.Contains(Path.GetFullPath(f))) continue;
            if (StoreId != 0 && ReadCowIdentity(f) is { } id && id.StoreId == StoreId && !listed.Contains(id.SnapshotId))
                RemoveOwnCowFile(f, id.SnapshotId, allowDamaged: false);
        }
        if (rewrite) await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Opens a valid persistent snapshot's COW file and loads its exceptions (throws on a missing or damaged file).</summary>
    private void OpenCowFile(SnapshotState st, SnapshotRecord rec, long originChunks, ref bool rewrite)
    {
        if (!_provider.Exists(st.CowPath))
            throw new DeviceOpenException(st.CowPath, DeviceOpenError.Missing, $"COW file of snapshot '{st.Name}' is missing");
        var store = PersistentExceptionStore.Open(_provider, st.CowPath, _layout, rec.CowSectors, GrowthSectors, rec.Id, StoreId, out var header, Committer);
        st.Store = store;
        // Stores made before COW space was reserved at create get their reservation now. Short of space, the store
        // still opens: a write that then finds no space fails by itself and the snapshot keeps its data.
        try { store.Cow.Reserve(store.TotalSectors); }
        catch (DeviceFullException) { }
        if (!header.IsValid)
        {
            st.InvalidCode = InvalidReasonCode.HeaderInvalid;
            st.InvalidReason = ReasonText(InvalidReasonCode.HeaderInvalid);
            rewrite = true;
            return;
        }
        store.Load(originChunks, (o, n) =>
        {
            if (st.Complete.Contains(o)) return false;
            st.Complete.Insert(o, n);
            return true;
        });
    }

    /// <summary>An error's message without the file name it starts with (the reason is shown beside the file).</summary>
    private static string ErrorText(Exception e)
    {
        string m = e.Message.ReplaceLineEndings(" ");
        int colon = m.IndexOf(": ", StringComparison.Ordinal);
        return colon > 0 && m.AsSpan(0, colon).Contains('/') ? m[(colon + 2)..] : m;
    }

    /// <summary>This store's identity (<see cref="Superblock.StoreId"/>); every COW file it makes carries it.</summary>
    private ulong StoreId => _superblock.StoreId;

    private static ulong NewStoreId()
    {
        Span<byte> b = stackalloc byte[8];
        ulong id;
        do
        {
            System.Security.Cryptography.RandomNumberGenerator.Fill(b);
            id = BitConverter.ToUInt64(b);
        } while (id == 0);
        return id;
    }

    /// <summary>
    /// The identity in the header of a file that may be a COW file (of this store or another), or null when it has no
    /// good header (see <see cref="CowHeader.TryIdentify"/>).
    /// </summary>
    private (ulong StoreId, ulong SnapshotId, uint Kind)? ReadCowIdentity(string path)
    {
        try
        {
            using var dev = _provider.Open(path);
            if (dev.SectorCount < 1) return null;
            var sector = new byte[BlockDevice.SectorSize];
            dev.Read(0, sector);
            return CowHeader.TryIdentify(sector);
        }
        catch (Exception e) when (e is IOException or JournalException)
        {
            return null;
        }
    }

    /// <summary>
    /// Removes the COW file of snapshot <paramref name="snapshotId"/> only if this store made it: its header carries this
    /// store's id and that snapshot id. With <paramref name="allowDamaged"/> (an explicit delete of a snapshot the
    /// superblock lists) a file with no good header at all is removed too; a file whose header names another store or
    /// another snapshot never is. Returns true when the file is gone.
    /// </summary>
    private bool RemoveOwnCowFile(string path, ulong snapshotId, bool allowDamaged)
    {
        if (!_provider.Exists(path)) return true;
        bool remove = ReadCowIdentity(path) is { } id ? id.StoreId == StoreId && id.SnapshotId == snapshotId : allowDamaged;
        if (remove) _provider.Delete(path);
        return remove;
    }

    private long GrowthSectors => Math.Max(_options.CowGrowthBytes / BlockDevice.SectorSize, 2048);

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
    /// Commits the superblock with the current snapshot list through the journal and forces it: when this returns the
    /// change is durable in the log (the AIL writes <c>store.sb</c> later). Caller holds the gate (shared or exclusive).
    /// Cancellation applies only while waiting for log space and the item: once committed, the change is forced whatever
    /// happens (a caller that gave up could otherwise undo in memory what the log already holds).
    /// </summary>
    internal async ValueTask CommitSuperblockAsync(CancellationToken cancellationToken = default)
    {
        var journal = _journal ?? throw new InvalidOperationException("the journal is not open");
        ulong sequence;
        // Log space first, holding nothing: the AIL may need to write the superblock item home to free it.
        using (var tx = await journal.BeginTransactionAsync(SuperblockItem.ReserveBytes(journal), cancellationToken).ConfigureAwait(false))
        {
            // Waiting for another superblock change to finish its commit (its holder waits for nothing we hold).
            await _sbItem.Lock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                Superblock next;
                lock (_stateLock)
                {
                    next = _superblock with { Snapshots = _snapshots.Select(s => s.ToRecord()).ToArray() };
                    _superblock = next;
                }
                _sbItem.Set(next);
                tx.AddItem(_sbItem);
                sequence = await tx.CommitAsync(CancellationToken.None).ConfigureAwait(false);
            }
            finally
            {
                _sbItem.Lock.Release();
            }
        }
        await journal.ForceAsync(sequence, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>The superblock log item (tests inspect its home writes).</summary>
    internal SuperblockItem SuperblockLogItem => _sbItem;

    /// <summary>
    /// Validates a snapshot name: 1 to 64 bytes of UTF-8, letters, digits, '.', '_' and '-' only, not starting with
    /// '.', not "origin". Throws <see cref="JournalArgumentException"/>.
    /// </summary>
    public static void ValidateSnapshotName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (SnapshotRecord.NameProblem(name) is { } problem) throw new JournalArgumentException(problem);
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

    /// <summary>
    /// Creates a snapshot of the origin as it is now. I/O is quiesced for the duration: writes in flight finish first
    /// (they belong before the snapshot), writes issued meanwhile wait and land after it.
    /// </summary>
    public async ValueTask<StoreVolume> CreateSnapshotAsync(string name, SnapshotOptions? options = null, CancellationToken cancellationToken = default)
    {
        ThrowIfClosed();
        ValidateSnapshotName(name);
        options ??= new SnapshotOptions();
        string path = CowPathOf(name);
        long cowSectors = options.CowSectors ?? (options.Persistent ? FullCopyCowSectors : OriginSectors + ChunkSectors);
        long minimum = options.Persistent ? PersistentExceptionStore.MinimumSectors(ChunkSectors) : TransientExceptionStore.MinimumSectors(ChunkSectors);
        if (cowSectors / ChunkSectors * ChunkSectors < minimum)
            throw new JournalArgumentException($"{path}: COW size {cowSectors} sectors is too small: {(options.Persistent ? "the header chunk and the first metadata area need" : "the header chunk and one data chunk need")} {minimum} sectors");
        ulong id;
        lock (_stateLock)
        {
            CheckCanCreateLocked(name, path);
            id = _superblock.NextSnapshotId;
            _superblock = _superblock with { NextSnapshotId = id + 1 };
        }
        var kind = options.Persistent ? SnapshotKind.Persistent : SnapshotKind.Transient;
        var st = new SnapshotState(name, id, kind, cowSectors / ChunkSectors * ChunkSectors, path);
        st.Volume = new SnapshotVolume(this, st, OriginSectors);
        // The COW file is made (header written, space reserved, flushed) before I/O is quiesced, on a pool thread: the
        // zero-fill and flushes take the longest, and neither needs the snapshot list. Ids are never reused, so an id
        // taken here and lost to a failure is simply skipped.
        st.Store = await Task.Run(() => CreateCowFile(st, options.Persistent, cowSectors), cancellationToken).ConfigureAwait(false);
        ChangeTracker.ReserveMarks(st); // changed-block tracking: the chunks of its creation-marks table
        bool added = false;
        try
        {
            await _gate.EnterExclusiveAsync().ConfigureAwait(false);
            try
            {
                ThrowIfClosed();
                // Changed-block tracking: every other snapshot's entry count, written into the new COW file and flushed
                // while I/O is quiesced, before the superblock names the file.
                await _changes.RecordMarksAsync(st, cancellationToken).ConfigureAwait(false);
                lock (_stateLock)
                {
                    CheckCanCreateLocked(name, path);
                    _snapshots = [.. _snapshots, st];
                    added = true;
                }
                await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
                return st.Volume;
            }
            finally
            {
                _gate.ExitExclusive();
            }
        }
        catch
        {
            // Nothing durable names the file (the superblock commit failed or never ran): it goes.
            if (added) lock (_stateLock) _snapshots = _snapshots.Where(s => s != st).ToArray();
            st.Store.Dispose();
            _provider.Delete(path);
            throw;
        }
    }

    /// <summary>Refuses a create while a merge is unfinished, for a name in use, or past the limit. Under the state lock.</summary>
    private void CheckCanCreateLocked(string name, string path)
    {
        if (_merging is { } m)
            throw new JournalArgumentException($"{path}: cannot create a snapshot while the merge of '{m.Name}' into the origin is unfinished; run the merge again first");
        if (_snapshots.Any(s => s.Name == name)) throw new JournalArgumentException($"{path}: snapshot '{name}' already exists");
        if (_snapshots.Length >= MaxSnapshots) throw new JournalArgumentException($"{path}: the store already has {MaxSnapshots} snapshots");
    }

    /// <summary>
    /// Makes a new snapshot's COW file: created (refusing a path that exists: the store never overwrites a file),
    /// header written and flushed, and the whole configured size reserved on the file system, so a full disk later
    /// never costs the snapshot its data. On failure the file is removed and the error says what was needed.
    /// </summary>
    private ExceptionStore CreateCowFile(SnapshotState st, bool persistent, long cowSectors)
    {
        if (_provider.Exists(st.CowPath)) throw new JournalException($"{st.CowPath}: file already exists");
        ExceptionStore? store = null;
        try
        {
            if (persistent)
            {
                store = PersistentExceptionStore.Create(_provider, st.CowPath, _layout, cowSectors, GrowthSectors, st.Id, StoreId, Committer);
            }
            else
            {
                var dev = _provider.Create(st.CowPath, Math.Min(st.CowSectors, GrowthSectors));
                store = TransientExceptionStore.Create(dev, _layout, cowSectors, GrowthSectors, st.Id, StoreId);
            }
            try
            {
                store.Cow.Reserve(store.TotalSectors);
            }
            catch (DeviceFullException e)
            {
                throw new DeviceFullException(st.CowPath, 0,
                    $"no space left on device for snapshot '{st.Name}': its COW file needs {store.TotalSectors * BlockDevice.SectorSize} bytes reserved ({e.Message}); free space or give a smaller COW size", e);
            }
            return store;
        }
        catch (Exception e) when (e is not DeviceOpenException { Error: DeviceOpenError.AlreadyExists })
        {
            store?.Dispose();
            _provider.Delete(st.CowPath);
            throw;
        }
    }

    /// <summary>Deletes a snapshot and its COW file. I/O is quiesced for the duration (none is lost).</summary>
    public async ValueTask DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        ThrowIfClosed();
        ArgumentNullException.ThrowIfNull(name);
        await _gate.EnterExclusiveAsync().ConfigureAwait(false);
        try
        {
            ThrowIfClosed();
            SnapshotState st;
            lock (_stateLock)
            {
                st = FindLocked(name);
                if (st.Merging)
                    throw new JournalArgumentException($"{st.CowPath}: snapshot '{name}' is being merged into the origin (the origin needs its data); run the merge again to finish it");
            }
            RequireRemovable(st);
            await RemoveSnapshotAsync(st, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.ExitExclusive();
        }
    }

    /// <summary>
    /// Refuses, before anything is committed, a change that ends in removing <paramref name="st"/>'s COW file when the
    /// folder does not let it be removed (permissions, a read-only or immutable folder): the change is not made.
    /// </summary>
    internal void RequireRemovable(SnapshotState st)
    {
        if (_provider.WhyNotWritable(Folder) is { } why)
            throw new JournalException($"{st.CowPath}: snapshot '{st.Name}' cannot be removed: {Folder}: {why}; nothing was changed");
    }

    /// <summary>The snapshot named <paramref name="name"/>, or a one-line error naming its COW file. Under the state lock.</summary>
    private SnapshotState FindLocked(string name) =>
        _snapshots.FirstOrDefault(s => s.Name == name) ?? throw new JournalArgumentException($"{CowPathOf(name)}: no snapshot named '{name}'");

    /// <summary>
    /// The end of a delete (and of a merge): the snapshot leaves the list, the superblock without it is committed and
    /// forced, its log items stop writing home, and its COW file is removed. Gate held exclusively.
    /// </summary>
    private async ValueTask RemoveSnapshotAsync(SnapshotState st, CancellationToken cancellationToken)
    {
        lock (_stateLock)
        {
            _snapshots = _snapshots.Where(s => s != st).ToArray();
            st.Deleted = true;
            st.Merging = false;
            if (_merging == st) _merging = null;
        }
        await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
        if (st.Store is PersistentExceptionStore ps) ps.MarkDeleted();
        if (st.Store is not null) lock (_stateLock) _graveyard.Add(st.Store);
        RemoveOwnCowFile(st.CowPath, st.Id, allowDamaged: true);
    }

    /// <summary>The snapshot named <paramref name="name"/>; throws <see cref="JournalArgumentException"/> if there is none.</summary>
    public StoreVolume GetSnapshot(string name)
    {
        lock (_stateLock) return FindLocked(name).Volume!;
    }

    /// <summary>The volume named <paramref name="name"/>: <c>origin</c> or a snapshot.</summary>
    public StoreVolume GetVolume(string name) => name == "origin" ? Origin : GetSnapshot(name);

    /// <summary>Status of every snapshot, the log, the copy engine and the pools.</summary>
    public StoreStatus GetStatus()
    {
        var list = new List<SnapshotStatus>();
        lock (_stateLock)
        {
            foreach (var s in _snapshots)
            {
                var usage = s.Store?.Usage ?? new StoreUsage(0, s.CowSectors, 0);
                list.Add(new SnapshotStatus(s.Name, s.Kind, s.IsValid, usage.SectorsAllocated, usage.TotalSectors, usage.MetadataSectors,
                    s.Complete.Count, s.InvalidReason) { Merging = s.Merging, MergeFailure = s.MergeFailure });
            }
        }
        return new StoreStatus(Folder, OriginSectors, ChunkSectors, LogClean, list, _options.MaxInFlightCopies,
            _dataPath.Throttle.InFlight, _dataPath.Throttle.Peak, _dataPath.Throttle.Waits, _dataPath.PendingPool.Statistics, _dataPath.PlanPool.Statistics);
    }

    /// <summary>
    /// Makes every write that returned before the call durable: origin, snapshot data and metadata. Concurrent callers
    /// share the device flushes.
    /// </summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfClosed();
        SnapshotState[] snaps;
        lock (_stateLock) snaps = _snapshots;
        var tasks = new List<Task> { _dataPath.FlushOriginAsync(cancellationToken).AsTask() };
        foreach (var s in snaps)
            if (s.IsValid && s.Store is { } st) tasks.Add(st.FlushDataAsync(cancellationToken).AsTask());
        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    /// <summary>
    /// Closes the store cleanly: waits for I/O in flight, writes all metadata home, flushes every file, marks the log
    /// clean, releases the lock. Transient snapshots lose their contents. Calling it again does nothing.
    /// </summary>
    public async ValueTask CloseAsync(CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _closed) != 0) return;
        await _gate.EnterExclusiveAsync().ConfigureAwait(false);
        try
        {
            if (Interlocked.Exchange(ref _closed, 1) != 0) return;
            SnapshotState[] snaps;
            lock (_stateLock) snaps = _snapshots;
            foreach (var s in snaps)
            {
                if (s.Store is null) continue;
                await s.Store.FlushDataAsync(cancellationToken).ConfigureAwait(false);
            }
            await _origin.FlushAsync(cancellationToken).ConfigureAwait(false);
            // Writes every metadata segment home (the AIL flushes the COW files) and marks the log clean.
            if (_journal is not null)
            {
                await _pipeline.StopAsync().ConfigureAwait(false);
                if (_kicker is not null) await _kicker.DrainAsync().ConfigureAwait(false);
                await _journal.CloseAsync().ConfigureAwait(false);
            }
            DisposeSnapshotStores();
            foreach (var s in snaps)
                if (s.Kind == SnapshotKind.Transient) RemoveOwnCowFile(s.CowPath, s.Id, allowDamaged: false);
            _origin.Dispose();
            _logDevice.Dispose();
            _sbDevice.Dispose();
            _folderLock.Dispose();
        }
        finally
        {
            _gate.ExitExclusive();
        }
    }

    private void DisposeSnapshotStores()
    {
        SnapshotState[] snaps;
        ExceptionStore[] dead;
        lock (_stateLock)
        {
            snaps = _snapshots;
            dead = _graveyard.ToArray();
            _graveyard.Clear();
        }
        foreach (var s in snaps) s.Store?.Dispose();
        foreach (var d in dead) d.Dispose();
    }

    internal ValueTask OriginReadAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _dataPath.OriginReadAsync(sector, buffer, cancellationToken);

    internal ValueTask OriginWriteAsync(long sector, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken) =>
        _dataPath.OriginWriteAsync(sector, data, fua, cancellationToken);

    internal ValueTask SnapshotReadAsync(SnapshotState st, long sector, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _dataPath.SnapshotReadAsync(st, sector, buffer, cancellationToken);

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask SnapshotWriteAsync(SnapshotState st, long sector, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
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

    /// <summary>See <see cref="DataPath.SubmitOriginWrite"/> (the write-storm benchmark).</summary>
    internal Task SubmitOriginWrite(long sector, ReadOnlyMemory<byte> data, out Task completion) => _dataPath.SubmitOriginWrite(sector, data, out completion);

    /// <summary>
    /// Invalidates a snapshot (once): status Invalid at once, then on disk: header valid = 0 and the superblock.
    /// I/O errors during invalidation are ignored (the snapshot is unusable either way). Caller holds the gate shared
    /// or exclusive, and no lock.
    /// </summary>
    internal Task InvalidateAsync(SnapshotState st, InvalidReasonCode code)
    {
        lock (_stateLock)
        {
            if (st.Invalidation is not null) return st.Invalidation;
            if (st.InvalidReason is null)
            {
                st.InvalidCode = code;
                st.InvalidReason = ReasonText(code);
            }
            st.Invalidation = Task.Run(async () =>
            {
                try { if (st.Store is not null) await st.Store.InvalidateAsync().ConfigureAwait(false); }
                catch (IOException) { }
                try { await CommitSuperblockAsync().ConfigureAwait(false); }
                catch (Exception e) when (e is IOException or JournalException or ObjectDisposedException or InvalidOperationException) { }
            });
            return st.Invalidation;
        }
    }

    /// <summary>Same as <see cref="CloseAsync"/>.</summary>
    public ValueTask DisposeAsync() => CloseAsync();

    internal void ThrowIfClosed()
    {
        if (Volatile.Read(ref _closed) != 0) throw new JournalException($"{Folder}: store is closed");
    }

    /// <inheritdoc/>
    public override string ToString() => $"SnapshotStore({Folder}, origin {OriginSectors} sectors, chunk {ChunkSectors} sectors, {_snapshots.Length} snapshots)";
}
