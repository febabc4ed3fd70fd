using System.Text;
using Journal;
using Journal.Storage;
using Snapshot.Copy;
using Snapshot.Exceptions;
using Snapshot.Format;
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
    private readonly GroupFlush _originFlush;
    private readonly CowLayout _layout;
    private readonly OriginVolume _originVolume;
    private readonly AsyncGate _gate = new();
    private readonly CopyThrottle _throttle;
    private readonly BoundedPool<PendingException> _pendingPool;
    private readonly BoundedPool<CopyJob> _jobPool;
    private readonly CopyEngine _engine;

    // _stateLock protects: _snapshots (the array is replaced, never mutated, and only while the gate is held
    // exclusively), every SnapshotState's Complete/Pending tables and validity, _tracked, _superblock.
    // Held for in-memory work only: never across an await, never while doing I/O or waiting. Leaf locks that may be
    // taken under it: the pools', the throttle's, the exception stores' allocation locks.
    private readonly object _stateLock = new();
    private SnapshotState[] _snapshots = [];
    private readonly Dictionary<ulong, TrackedChunk> _tracked = new();
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
        _originFlush = new GroupFlush(ct => _origin.FlushAsync(ct));
        _originVolume = new OriginVolume(this, superblock.OriginSectors);
        _throttle = new CopyThrottle(options.MaxInFlightCopies);
        int budget = options.MaxInFlightCopies > 0 ? options.MaxInFlightCopies : StoreOptions.DefaultMaxInFlightCopies;
        int piece = (int)Math.Min(_layout.ChunkBytes, CopyEngine.PieceBytes);
        _pendingPool = new BoundedPool<PendingException>("pending exceptions", budget, options.PoolReserve, () => new PendingException());
        _jobPool = new BoundedPool<CopyJob>("copy jobs", budget, options.PoolReserve, () => new CopyJob(piece));
        _engine = new CopyEngine(this, _origin, _layout);
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
    internal CopyThrottle Throttle => _throttle;
    internal BoundedPool<PendingException> PendingPool => _pendingPool;
    internal BoundedPool<CopyJob> JobPool => _jobPool;
    internal object StateLock => _stateLock;
    internal MetadataJournal? Journal => _journal;
    private MetadataJournal? JournalForStores => _options.MetadataMode == MetadataMode.Journal ? _journal : null;
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
    internal (long Jobs, long ChunksCopied) CopyCounters => (_engine.Jobs, _engine.ChunksCopied);

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
        provider.EnsureFolder(folder);
        var folderLock = provider.Lock(folder);
        var created = new List<BlockDevice>();
        try
        {
            string sbPath = Path.Combine(folder, SuperblockFileName);
            if (provider.Exists(sbPath))
                throw new JournalException($"{sbPath}: a snapshot store already exists in {folder}");
            foreach (var p in new[] { OriginFileName, JournalFileName })
                if (provider.Exists(Path.Combine(folder, p)))
                    throw new JournalException($"{Path.Combine(folder, p)}: file already exists; {folder} is not empty");
            var origin = provider.Create(Path.Combine(folder, OriginFileName), options.OriginSectors);
            created.Add(origin);
            var log = provider.Create(Path.Combine(folder, JournalFileName), options.LogBlocks);
            created.Add(log);
            var sbDev = provider.Create(sbPath, Superblock.FileSectors);
            created.Add(sbDev);
            var sb = new Superblock(1, options.OriginSectors, options.ChunkSectors, 1, []);
            await sb.WriteAsync(sbDev, cancellationToken).ConfigureAwait(false);
            var store = new SnapshotStore(folder, options, folderLock, origin, sbDev, log, sb);
            store._journal = StoreJournal.Create(log);
            return store;
        }
        catch
        {
            foreach (var d in created) d.Dispose();
            folderLock.Dispose();
            throw;
        }
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
            await store.LoadSnapshotsAsync(cancellationToken).ConfigureAwait(false);
            return store;
        }
        catch
        {
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
                _provider.Delete(st.CowPath);
                if (st.IsValid)
                {
                    st.InvalidCode = InvalidReasonCode.TransientLost;
                    st.InvalidReason = ReasonText(InvalidReasonCode.TransientLost);
                    rewrite = true;
                }
                continue;
            }
            if (!st.IsValid) continue; // an invalid snapshot is never read again; its COW file stays as it is
            if (!_provider.Exists(st.CowPath))
                throw new JournalException($"{st.CowPath}: COW file of snapshot '{st.Name}' is missing");
            var store = PersistentExceptionStore.Open(_provider, st.CowPath, _layout, rec.CowSectors, GrowthSectors, rec.Id, out var header, JournalForStores);
            st.Store = store;
            if (!header.IsValid)
            {
                st.InvalidCode = InvalidReasonCode.HeaderInvalid;
                st.InvalidReason = ReasonText(InvalidReasonCode.HeaderInvalid);
                rewrite = true;
                continue;
            }
            store.Load(originChunks, (o, n) =>
            {
                if (st.Complete.Contains(o)) return false;
                st.Complete.Insert(o, n);
                return true;
            });
        }
        lock (_stateLock) _snapshots = states.ToArray();
        // COW files no snapshot owns: left by a create or delete that a crash interrupted.
        var owned = new HashSet<string>(states.Select(s => Path.GetFullPath(s.CowPath)), StringComparer.Ordinal);
        foreach (var f in _provider.List(Folder, CowExtension))
            if (!owned.Contains(Path.GetFullPath(f))) _provider.Delete(f);
        if (rewrite) await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
    }

    private long GrowthSectors => Math.Max(_options.CowGrowthBytes / BlockDevice.SectorSize, 2048);

    internal static string ReasonText(InvalidReasonCode code) => code switch
    {
        InvalidReasonCode.CowFull => "COW file is full",
        InvalidReasonCode.IoError => "I/O error on the COW file",
        InvalidReasonCode.TransientLost => "transient snapshot: its contents were not kept when the store was closed",
        InvalidReasonCode.HeaderInvalid => "the COW header is marked invalid",
        InvalidReasonCode.LogReset => "the journal was reset (jreplay zero-log): exceptions not yet written home were lost",
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
        if (name.Length == 0) throw new JournalArgumentException("snapshot name is empty");
        int bytes = Encoding.UTF8.GetByteCount(name);
        if (bytes > MaxNameBytes) throw new JournalArgumentException($"snapshot name '{name}' is too long: {bytes} bytes, at most {MaxNameBytes}");
        if (name.Contains('/') || name.Contains('\\')) throw new JournalArgumentException($"snapshot name '{name}' contains a path separator");
        if (name.Contains("..")) throw new JournalArgumentException($"snapshot name '{name}' contains \"..\"");
        if (name[0] == '.') throw new JournalArgumentException($"snapshot name '{name}' starts with '.'");
        foreach (char ch in name)
            if (!(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-'))
                throw new JournalArgumentException($"snapshot name '{name}' contains '{(char.IsControl(ch) ? $"\\u{(int)ch:x4}" : ch.ToString())}': use letters, digits, '.', '_' and '-'");
        if (name == "origin") throw new JournalArgumentException("snapshot name 'origin' is reserved for the origin volume");
    }

    /// <summary>COW size that holds a full copy of the origin (header, every area, every chunk), in sectors.</summary>
    public long FullCopyCowSectors
    {
        get
        {
            long chunks = OriginSectors / ChunkSectors;
            long areas = (chunks + _layout.ExceptionsPerArea - 1) / _layout.ExceptionsPerArea + 1;
            return (chunks + areas + CowLayout.HeaderChunks + 1) * ChunkSectors;
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
        long cowSectors = options.CowSectors ?? (options.Persistent ? FullCopyCowSectors : OriginSectors);
        long minimum = options.Persistent ? PersistentExceptionStore.MinimumSectors(ChunkSectors) : ChunkSectors;
        if (cowSectors / ChunkSectors * ChunkSectors < minimum)
            throw new JournalArgumentException($"{path}: COW size {cowSectors} sectors is too small: {(options.Persistent ? "the header chunk and the first metadata area need" : "one chunk needs")} {minimum} sectors");
        await _gate.EnterExclusiveAsync().ConfigureAwait(false);
        try
        {
            ThrowIfClosed();
            ulong id;
            lock (_stateLock)
            {
                if (_merging is { } m)
                    throw new JournalArgumentException($"{path}: cannot create a snapshot while the merge of '{m.Name}' into the origin is unfinished; run the merge again first");
                if (_snapshots.Any(s => s.Name == name)) throw new JournalArgumentException($"{path}: snapshot '{name}' already exists");
                if (_snapshots.Length >= MaxSnapshots) throw new JournalArgumentException($"{path}: the store already has {MaxSnapshots} snapshots");
                id = _superblock.NextSnapshotId;
                _superblock = _superblock with { NextSnapshotId = id + 1 };
            }
            if (_provider.Exists(path)) throw new JournalException($"{path}: file already exists");
            var kind = options.Persistent ? SnapshotKind.Persistent : SnapshotKind.Transient;
            var st = new SnapshotState(name, id, kind, cowSectors / ChunkSectors * ChunkSectors, path);
            st.Volume = new SnapshotVolume(this, st, OriginSectors);
            if (options.Persistent)
            {
                st.Store = PersistentExceptionStore.Create(_provider, path, _layout, cowSectors, GrowthSectors, id, JournalForStores);
            }
            else
            {
                long initial = Math.Min(st.CowSectors, GrowthSectors);
                st.Store = new TransientExceptionStore(_provider.Create(path, initial), _layout, cowSectors, GrowthSectors);
            }
            lock (_stateLock) _snapshots = [.. _snapshots, st];
            try
            {
                await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                lock (_stateLock) _snapshots = _snapshots.Where(s => s != st).ToArray();
                st.Store.Dispose();
                _provider.Delete(path);
                throw;
            }
            return st.Volume;
        }
        finally
        {
            _gate.ExitExclusive();
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
            await RemoveSnapshotAsync(st, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.ExitExclusive();
        }
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
        _provider.Delete(st.CowPath);
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
            _throttle.InFlight, _throttle.Peak, _throttle.Waits, _pendingPool.Statistics, _jobPool.Statistics);
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
        var tasks = new List<Task> { _originFlush.FlushAsync(cancellationToken).AsTask() };
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
                if (s.IsValid) await s.Store.CloseAsync(cancellationToken).ConfigureAwait(false);
                await s.Store.FlushDataAsync(cancellationToken).ConfigureAwait(false);
            }
            await _origin.FlushAsync(cancellationToken).ConfigureAwait(false);
            // Writes every metadata segment home (the AIL flushes the COW files) and marks the log clean.
            if (_journal is not null)
            {
                await PersistentExceptionStore.KickerFor(_journal).DrainAsync().ConfigureAwait(false);
                await _journal.CloseAsync().ConfigureAwait(false);
            }
            DisposeSnapshotStores();
            foreach (var s in snaps)
                if (s.Kind == SnapshotKind.Transient) _provider.Delete(s.CowPath);
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

    /// <summary>Same as <see cref="CloseAsync"/>.</summary>
    public ValueTask DisposeAsync() => CloseAsync();

    internal void ThrowIfClosed()
    {
        if (Volatile.Read(ref _closed) != 0) throw new JournalException($"{Folder}: store is closed");
    }

    /// <inheritdoc/>
    public override string ToString() => $"SnapshotStore({Folder}, origin {OriginSectors} sectors, chunk {ChunkSectors} sectors, {_snapshots.Length} snapshots)";
}
