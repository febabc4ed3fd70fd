using Journal;
using Journal.Storage;
using Snapshot.Changes;
using Snapshot.Commit;
using Snapshot.Diagnostics;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Metadata;
using Snapshot.Sync;

namespace Snapshot.Catalog;

/// <summary>
/// The snapshot catalog: the list of snapshots and their states, the superblock that records them (a journal log item
/// whose home is <c>store.sb</c>), and every change to them: load at open, create, delete, invalidate, merge. It also
/// owns the COW files as files: it makes them, recognises its own, and removes only those.
/// </summary>
/// <remarks>
/// <para><b>Locking.</b> <c>StateLock</c> protects: the snapshot array (replaced, never mutated, and only while the I/O
/// gate is held exclusively), every snapshot's complete and pending tables and validity, the data path's tracked reads,
/// the superblock, and the merging snapshot. It is held for in-memory work only: never across an await, never while
/// doing I/O or waiting. Leaf locks that may be taken under it: the pools', the throttle's, the exception stores'
/// allocation locks. The superblock item's own lock serialises superblock changes from the change to the end of the
/// commit (see <see cref="CommitSuperblockAsync"/>).</para>
/// <para><b>Lock order</b> (a lock may be taken while holding those above it): the I/O gate; the journal's log-space
/// reservation (taken holding nothing but the gate); the superblock item lock; the state lock; the leaves.</para>
/// <para><b>Merge</b> puts a snapshot back into the origin (the dm-snapshot <c>snapshot-merge</c> idea): afterwards the
/// origin holds what the snapshot showed, and the snapshot is gone.</para>
/// <para><b>Merge steps.</b> (1) Gate exclusive: no I/O is in flight and none starts until the merge returns. (2) Mark the
/// snapshot <i>merging</i> in the superblock and commit it (durable) before the origin changes. (3) For each exception
/// of the snapshot, in chunk order, one at a time: read its chunk from the COW file and write it to the origin through
/// the origin write path, which first gives every other snapshot that still shares the origin chunk its copy
/// (committed durably, as for any origin write). (4) Flush the origin. (5) Delete the snapshot as
/// <see cref="DeleteSnapshotAsync"/> does: the superblock without it is committed, then its COW file is removed.</para>
/// <para><b>Crash safety.</b> Until step 5 commits, the snapshot and all its exceptions stay, and while a snapshot is
/// marked merging the origin <i>reads as that snapshot</i>: a chunk it holds an exception for is read from (and an
/// origin write to it goes into) its COW chunk. So after a crash at any point the origin shows the snapshot's data,
/// whichever chunks had already been copied home, and every other snapshot shows what it showed before (its copies
/// were durable before the origin chunk was overwritten). Running the merge again starts over from the first chunk,
/// which rewrites identical data for the chunks already home, and finishes it: the merge is resumable and idempotent.
/// A failed merge (an I/O error) leaves the same state, reported as <c>Merge failed</c>.</para>
/// <para>While a merge is unfinished, the merging snapshot's own handle refuses I/O, it cannot be deleted, and no
/// snapshot can be created (a new one would capture the origin's physical chunks, not what it reads as).</para>
/// </remarks>
internal sealed class SnapshotCatalog
{
    private readonly SnapshotStore _store;
    private readonly object _stateLock = new();
    private SnapshotState[] _snapshots = [];

    // A snapshot kept unavailable at open (CowUnreadablePolicy.KeepSnapshot), or null: while there is one, origin writes
    // and merges are refused. Set by the open's load, before the store is in use, and recomputed by a delete (gate held
    // exclusively, so no origin write is running); read without a lock on the origin write path.
    private volatile SnapshotState? _unavailable;
    private Superblock _superblock;

    // The snapshot whose merge into the origin is unfinished, or null (at most one). Written under _stateLock while the
    // gate is held exclusively; the data path reads it under the gate (shared), so it never changes under an I/O.
    private SnapshotState? _merging;

    // The superblock as a journal log item; its home is store.sb. Its Lock serialises superblock changes from the change
    // to the end of the commit (see CommitSuperblockAsync): taken inside the gate (shared or exclusive), after the
    // transaction's log space is reserved, never the other way round; takes nothing else but _stateLock briefly.
    private SuperblockItem _sbItem;

    // Exception stores of deleted snapshots: their COW files are removed, but their devices stay open until the
    // journal is closed, because the AIL may be writing one of their segments at the moment of the delete.
    private readonly List<ExceptionStore> _graveyard = new();

    public SnapshotCatalog(SnapshotStore store, Superblock superblock)
    {
        _store = store;
        _superblock = superblock;
        _sbItem = new SuperblockItem(store.SuperblockDevice, superblock);
    }

    /// <summary>The state lock (see the remarks).</summary>
    public object StateLock => _stateLock;

    /// <summary>The snapshot list: read under the state lock (the data path's look at a run).</summary>
    public SnapshotState[] SnapshotsUnsafe => _snapshots;

    /// <summary>The snapshot list now.</summary>
    public SnapshotState[] Snapshots { get { lock (_stateLock) return _snapshots; } }

    /// <summary>The snapshot whose merge is unfinished: read under the state lock, or under the gate (it changes only under both).</summary>
    public SnapshotState? MergingUnsafe => Volatile.Read(ref _merging);

    /// <summary>The superblock as last set.</summary>
    public Superblock Superblock { get { lock (_stateLock) return _superblock; } }

    /// <summary>Starts the superblock item from the superblock recovery left (the open's superblock pass).</summary>
    public void Recovered(Superblock superblock)
    {
        lock (_stateLock) _superblock = superblock;
        _sbItem = new SuperblockItem(_store.SuperblockDevice, superblock);
    }

    /// <summary>Bytes written to every snapshot's COW file since open (data, metadata, headers).</summary>
    public long CowBytesWritten
    {
        get
        {
            lock (_stateLock) return _snapshots.Sum(s => s.Store?.Cow.Counters.BytesWritten ?? 0) + _graveyard.Sum(g => g.Cow.Counters.BytesWritten);
        }
    }

    /// <summary>Each snapshot's status line and fields, as <c>dmsetup status</c> shows them.</summary>
    public List<SnapshotStatus> Statuses()
    {
        var list = new List<SnapshotStatus>();
        lock (_stateLock)
        {
            foreach (var s in _snapshots)
            {
                var usage = s.Store?.Usage ?? new StoreUsage(0, s.CowSectors, 0);
                list.Add(new SnapshotStatus(s.Name, s.Kind, s.IsValid, usage.SectorsAllocated, usage.TotalSectors, usage.MetadataSectors,
                    s.Complete.Count, s.InvalidReason) { Merging = s.Merging, MergeFailure = s.MergeFailure, Unavailable = s.Unavailable });
            }
        }
        return list;
    }

    /// <summary>
    /// A snapshot kept unavailable at open, or null. While there is one, <see cref="ThrowIfUnavailable"/> refuses every
    /// change of the origin: it would need a copy into a COW file that is not there (<see cref="SnapshotUnavailableException"/>,
    /// nothing changed).
    /// </summary>
    public SnapshotState? Unavailable => _unavailable;

    /// <summary>See <see cref="ThrowIfUnavailable"/>.</summary>
    public void ThrowIfUnavailable(string what)
    {
        if (_unavailable is { } u) throw SnapshotUnavailableException.Refusing(u.CowPath, u.Name, u.InvalidReason!, what);
    }

    /// <summary>The snapshot named <paramref name="name"/>; throws <see cref="JournalArgumentException"/> if there is none.</summary>
    public SnapshotState Find(string name)
    {
        lock (_stateLock) return FindLocked(name);
    }

    public async ValueTask LoadSnapshotsAsync(CancellationToken cancellationToken)
    {
        var sb = _superblock;
        long originChunks = sb.OriginSectors / sb.ChunkSectors;
        bool rewrite = false;
        var states = new List<SnapshotState>();
        foreach (var rec in sb.Snapshots)
        {
            var kind = rec.Kind == SnapshotKindCode.Persistent ? SnapshotKind.Persistent : SnapshotKind.Transient;
            var st = new SnapshotState(rec.Name, rec.Id, kind, rec.CowSectors, _store.CowPathOf(rec.Name)) { CowStamp = rec.CowStamp };
            st.Volume = new SnapshotVolume(_store, st, sb.OriginSectors);
            st.Written = st.WrittenDurable = (rec.Flags & SnapshotRecordFlags.Written) != 0; // changed-block tracking
            states.Add(st);
            if (rec.State == SnapshotStateCode.Invalid)
            {
                st.InvalidCode = rec.Reason;
                st.InvalidReason = SnapshotStore.ReasonText(rec.Reason);
            }
            if (rec.State == SnapshotStateCode.Merging)
            {
                // A merge was interrupted: the origin reads as this snapshot until a merge finishes it.
                st.Merging = true;
                _merging = st;
            }
            if (kind == SnapshotKind.Transient)
            {
                // Case 11 (StoreRecovery, docs/snapshot.md): a transient snapshot's exceptions were only in memory: after
                // a close (or crash) it has no contents.
                RemoveOwnCowFile(st.CowPath, st.Id, allowDamaged: false, CowHeader.KindTransient);
                if (st.IsValid)
                {
                    st.InvalidCode = InvalidReasonCode.TransientLost;
                    st.InvalidReason = SnapshotStore.ReasonText(InvalidReasonCode.TransientLost);
                    rewrite = true;
                    SnapshotLog.Invalidated(_store.Logger, _store.Folder, st.Name, st.InvalidReason);
                }
                continue;
            }
            if (!st.IsValid) continue; // an invalid snapshot is never read again; its COW file stays as it is
            try
            {
                OpenCowFile(st, rec, originChunks, ref rewrite);
            }
            catch (JournalException e) when (e is DeviceOpenException { Error: DeviceOpenError.AccessDenied or DeviceOpenError.InUse }
                or PersistentExceptionStore.SizeMismatchException)
            {
                // Nothing says the file is damaged: it is there but may not be opened (permissions, an immutable or
                // append-only file, another holder), or it is intact and the superblock disagrees with its size.
                // Invalidating would cost the snapshot for good; the open is refused instead, with nothing changed.
                st.Store?.Dispose();
                foreach (var other in states) other.Store?.Dispose();
                if (e is DeviceOpenException d)
                    throw new DeviceOpenException(st.CowPath, d.Error,
                        $"COW file of snapshot '{st.Name}' cannot be opened ({d.Problem}); the store was not opened and nothing was changed", e);
                throw;
            }
            catch (Exception e) when (!st.Merging && e is IOException or JournalException)
            {
                // Case 10: one damaged, truncated or missing COW file costs the origin's writes, not the snapshot: by
                // default the snapshot is kept unavailable and nothing is committed (the file may come back: a mistaken
                // move, a restore from backup), and the origin refuses writes meanwhile, since each would need a copy
                // into the file. With CowUnreadablePolicy.InvalidateSnapshot the snapshot is invalidated instead
                // (recorded in the superblock, so the origin may change without it from now on). Either way the origin
                // and the other snapshots open. A snapshot being merged is the exception: the origin reads through it,
                // so its loss is an error.
                st.Store?.Dispose();
                st.Store = null;
                st.Complete.Clear();
                bool missing = e is DeviceOpenException { Error: DeviceOpenError.Missing };
                var code = missing ? InvalidReasonCode.CowMissing : InvalidReasonCode.CowDamaged;
                st.InvalidCode = code;
                st.InvalidReason = missing ? SnapshotStore.ReasonText(code) : $"{SnapshotStore.ReasonText(code)}: {ErrorText(e)}";
                if (_store.Options.CowUnreadablePolicy == CowUnreadablePolicy.KeepSnapshot)
                {
                    st.Unavailable = true;
                    SnapshotLog.Unavailable(_store.Logger, _store.Folder, st.Name, st.InvalidReason);
                    continue;
                }
                rewrite = true;
            }
            if (!st.IsValid) SnapshotLog.Invalidated(_store.Logger, _store.Folder, st.Name, st.InvalidReason!);
        }
        lock (_stateLock) _snapshots = states.ToArray();
        _unavailable = states.FirstOrDefault(s => s.Unavailable);
        // Case 12, the sweep: COW files no snapshot owns, left by a create or delete that a crash interrupted. Only files
        // whose header carries this store's id (and a snapshot id the superblock does not list) are removed; anything
        // else is left alone. The superblock here is the newest the store has (a fallback to an older copy is refused
        // unless the journal brings it up to date), so no file is removed on the word of an older copy.
        var owned = new HashSet<string>(states.Select(s => Path.GetFullPath(s.CowPath)), StringComparer.Ordinal);
        var listed = states.Select(s => s.Id).ToHashSet();
        foreach (var f in _store.Provider.List(_store.Folder, SnapshotStore.CowExtension))
        {
            if (owned.Contains(Path.GetFullPath(f))) continue;
            if (StoreId != 0 && ReadCowIdentity(f) is { } id && id.StoreId == StoreId && !listed.Contains(id.SnapshotId))
                TryRemove(f, () => RemoveOwnCowFile(f, id.SnapshotId, allowDamaged: false));
            else if (_store.Provider.Exists(CreationMarkPath(f)) && IsPlainFile(f) && IsUnwrittenCowFile(f))
                TryRemove(f, () => _store.Provider.Delete(f)); // a create stopped before it wrote the header: the file holds nothing at all
        }
        // Then the creation marks themselves (their names carry this store's id: only a create of this store makes them).
        foreach (var mark in _store.Provider.List(_store.Folder, CreationMarkSuffix))
            if (IsPlainFile(mark)) TryRemove(mark, () => _store.Provider.Delete(mark));
        if (rewrite) await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Opens a valid persistent snapshot's COW file and loads its exceptions (throws on a missing or damaged file).</summary>
    private void OpenCowFile(SnapshotState st, SnapshotRecord rec, long originChunks, ref bool rewrite)
    {
        if (!_store.Provider.Exists(st.CowPath))
        {
            // A folder in the file's place is not a missing file (a FIFO or device is refused by the open below).
            if (Directory.Exists(st.CowPath)) throw new JournalException($"{st.CowPath}: is a directory, not a COW file");
            throw new DeviceOpenException(st.CowPath, DeviceOpenError.Missing, $"COW file of snapshot '{st.Name}' is missing");
        }
        var store = PersistentExceptionStore.Open(_store.Provider, st.CowPath, _store.Layout, rec.CowSectors, GrowthSectors, rec.Id, StoreId, out var header, _store.Committer);
        uint storeStamp = st.CowStamp;
        if (header.IsValid && CowHeader.IsOlderCopy(header.Stamp, storeStamp))
        {
            // An earlier copy of the file (a backup put back): it lacks the exceptions made since, and would read the
            // origin's new data where the snapshot holds old data. Damage, as case 10 treats it (kept unavailable by
            // default: the current file may still come back).
            store.Dispose();
            throw new StoreCorruptionException(st.CowPath, CowHeader.StampOffset, "it is an older copy of the file (its stamp is behind the store's record of it)",
                $"stamp {storeStamp} or {CowHeader.NextStamp(storeStamp)}", header.Stamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        ReportGrowthAheadFailures(store, st.Name);
        st.Store = store;
        // Stores made before COW space was reserved at create get their reservation now. Short of space, the store
        // still opens: a write that then finds no space fails by itself and the snapshot keeps its data.
        try { store.Cow.Reserve(store.TotalSectors); }
        catch (DeviceFullException) { }
        if (!header.IsValid)
        {
            st.InvalidCode = InvalidReasonCode.HeaderInvalid;
            st.InvalidReason = SnapshotStore.ReasonText(InvalidReasonCode.HeaderInvalid);
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

    public static ulong NewStoreId()
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
            using var dev = _store.Provider.Open(path);
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
    /// How the name of a creation mark ends: <c>.creating-</c> and this store's id in 16 hex digits. A snapshot create
    /// makes the empty file <c>.&lt;name&gt;.cow.creating-&lt;id&gt;</c> (durably) before the COW file, and removes it once the
    /// COW file's header is flushed. A COW file that holds only zeros is removed at open only beside its mark: the mark
    /// says this store made the file (a crash came between making it and writing its header); a user's file of the same
    /// name and contents has no mark and is never removed.
    /// </summary>
    private string CreationMarkSuffix => string.Create(System.Globalization.CultureInfo.InvariantCulture, $".creating-{StoreId:x16}");

    /// <summary>The creation mark of the COW file <paramref name="cowPath"/> (see <see cref="CreationMarkSuffix"/>).</summary>
    private string CreationMarkPath(string cowPath) =>
        Path.Combine(Path.GetDirectoryName(cowPath) ?? ".", "." + Path.GetFileName(cowPath) + CreationMarkSuffix);

    /// <summary>
    /// True for a COW-named file that holds nothing but zeros: what a snapshot create leaves when it is stopped between
    /// creating its file and writing the header (the zero-fill comes first). Asked only of a file beside its creation
    /// mark; a file with any byte that is not zero is never taken for one.
    /// </summary>
    private bool IsUnwrittenCowFile(string path)
    {
        try
        {
            using var dev = _store.Provider.Open(path);
            var piece = new byte[(int)Math.Min(dev.Length, 1 << 20)];
            for (long at = 0; at < dev.SectorCount;)
            {
                int sectors = (int)Math.Min(piece.Length / BlockDevice.SectorSize, dev.SectorCount - at);
                var span = piece.AsSpan(0, sectors * BlockDevice.SectorSize);
                dev.Read(at, span);
                if (span.ContainsAnyExcept((byte)0)) return false;
                at += sectors;
            }
            return true;
        }
        catch (Exception e) when (e is IOException or JournalException)
        {
            return false;
        }
    }

    /// <summary>
    /// Removes the COW file of snapshot <paramref name="snapshotId"/> only if this store made it: its header carries this
    /// store's id and that snapshot id. With <paramref name="allowDamaged"/> (an explicit delete of a snapshot the
    /// superblock lists) a file with no good header at all is removed too; a file whose header names another store or
    /// another snapshot never is. With <paramref name="kind"/> (a transient snapshot's file, removed because its contents
    /// were only in memory) the header must also say that kind: a superblock that calls a persistent snapshot's file
    /// transient does not get it removed. Anything but a regular file (a symbolic link, a FIFO, a device) is never removed.
    /// Returns true when the file is gone.
    /// </summary>
    public bool RemoveOwnCowFile(string path, ulong snapshotId, bool allowDamaged, uint? kind = null)
    {
        if (!_store.Provider.Exists(path)) return true;
        // Never a symbolic link, FIFO, device or socket put where a COW file should be: the store makes regular files only.
        if (!IsPlainFile(path)) return false;
        bool remove = ReadCowIdentity(path) is { } id
            ? id.StoreId == StoreId && id.SnapshotId == snapshotId && (kind is null || id.Kind == kind)
            : allowDamaged;
        if (remove) _store.Provider.Delete(path);
        return remove;
    }

    /// <summary>A regular file, not a symbolic link (nor a FIFO, device or socket): the only kind of file the store makes.</summary>
    private static bool IsPlainFile(string path) => Recovery.RegularFile.WhatElse(path) is null && new FileInfo(path).LinkTarget is null;

    private long GrowthSectors => Math.Max(_store.Options.CowGrowthBytes / BlockDevice.SectorSize, 2048);

    /// <summary>Logs a failed growth ahead of <paramref name="store"/>'s COW file (once per failure; see <see cref="ExceptionStore.GrowthAheadFailed"/>).</summary>
    private void ReportGrowthAheadFailures(ExceptionStore store, string snapshot) =>
        store.GrowthAheadFailed = e => SnapshotLog.GrowthAheadFailed(_store.Logger, _store.Folder, snapshot, e.Message);

    /// <summary>
    /// Commits the superblock with the current snapshot list through the journal and forces it: when this returns the
    /// change is durable in the log (the AIL writes <c>store.sb</c> later). Caller holds the gate (shared or exclusive).
    /// Cancellation applies only while waiting for log space and the item: once committed, the change is forced whatever
    /// happens (a caller that gave up could otherwise undo in memory what the log already holds).
    /// </summary>
    public async ValueTask CommitSuperblockAsync(CancellationToken cancellationToken = default)
    {
        var journal = _store.Journal ?? throw new InvalidOperationException("the journal is not open");
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

    /// <summary>
    /// Advances the COW stamps (<see cref="SnapshotRecord.CowStamp"/>) of the available persistent snapshots whose COW
    /// file changed in this session (<paramref name="everyFile"/>: of all of them): each file's header gets its next
    /// stamp and is flushed, then the superblock naming the stamps is committed and forced. A copy of a file taken before
    /// then carries an earlier stamp and is told apart from the current file at open (an older copy put back would read
    /// the origin's new data where the snapshot holds old data); a file that did not change keeps its stamp, so a copy of
    /// it stays current. Called by a clean close (the files written to since open), and by an open that replayed the
    /// journal (every file: which ones the crashed session changed is not known), both with no I/O running. An
    /// unavailable snapshot's file is not there to stamp: its record keeps its stamp, which the file put back still
    /// carries.
    /// </summary>
    public async ValueTask AdvanceCowStampsAsync(bool everyFile, CancellationToken cancellationToken)
    {
        List<(SnapshotState State, PersistentExceptionStore File, uint Next)> files;
        lock (_stateLock)
        {
            files = _snapshots.Where(s => s.IsValid && !s.Deleted && s.Store is PersistentExceptionStore ps && (everyFile || ps.Cow.Counters.BytesWritten > 0))
                .Select(s => (s, (PersistentExceptionStore)s.Store!, CowHeader.NextStamp(s.CowStamp))).ToList();
        }
        if (files.Count == 0) return;
        // Every file first (a crash before the commit leaves it one ahead, which an open accepts), then the superblock.
        foreach (var (_, file, next) in files) await file.StampAsync(next, cancellationToken).ConfigureAwait(false);
        lock (_stateLock)
            foreach (var (st, file, next) in files)
                if (file.HasStamp) st.CowStamp = next;
        await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The superblock log item (tests inspect its home writes).</summary>
    public SuperblockItem SuperblockLogItem => _sbItem;

    /// <summary>
    /// Creates a snapshot of the origin as it is now. I/O is quiesced for the duration: writes in flight finish first
    /// (they belong before the snapshot), writes issued meanwhile wait and land after it.
    /// </summary>
    public async ValueTask<StoreVolume> CreateSnapshotAsync(string name, SnapshotOptions? options = null, CancellationToken cancellationToken = default)
    {
        _store.ThrowIfClosed();
        _store.ThrowIfReadOnly("creating a snapshot");
        SnapshotStore.ValidateSnapshotName(name);
        options ??= new SnapshotOptions();
        string path = _store.CowPathOf(name);
        long cowSectors = options.CowSectors ?? (options.Persistent ? _store.FullCopyCowSectors : _store.OriginSectors + _store.ChunkSectors);
        long minimum = options.Persistent ? PersistentExceptionStore.MinimumSectors(_store.ChunkSectors) : TransientExceptionStore.MinimumSectors(_store.ChunkSectors);
        if (cowSectors / _store.ChunkSectors * _store.ChunkSectors < minimum)
            throw new SnapshotArgumentException($"{path}: COW size {cowSectors} sectors is too small: {(options.Persistent ? "the header chunk and the first metadata area need" : "the header chunk and one data chunk need")} {minimum} sectors");
        ulong id;
        lock (_stateLock)
        {
            CheckCanCreateLocked(name, path);
            id = _superblock.NextSnapshotId;
            if (id > Superblock.MaxSnapshotId)
                throw new SnapshotArgumentException($"{path}: the store has given out every snapshot id (1 to {Superblock.MaxSnapshotId}; ids are never reused), so no more snapshots can be created");
            _superblock = _superblock with { NextSnapshotId = id + 1 };
        }
        var kind = options.Persistent ? SnapshotKind.Persistent : SnapshotKind.Transient;
        var st = new SnapshotState(name, id, kind, cowSectors / _store.ChunkSectors * _store.ChunkSectors, path);
        st.Volume = new SnapshotVolume(_store, st, _store.OriginSectors);
        // The COW file is made (header written, space reserved, flushed) before I/O is quiesced, on a pool thread: the
        // zero-fill and flushes take the longest, and neither needs the snapshot list. Ids are never reused, so an id
        // taken here and lost to a failure is simply skipped.
        st.Store = await Task.Run(() => CreateCowFile(st, options.Persistent, cowSectors, options.Preallocate), cancellationToken).ConfigureAwait(false);
        ChangeTracker.ReserveMarks(st); // changed-block tracking: the chunks of its creation-marks table
        bool added = false;
        try
        {
            await _store.Gate.EnterExclusiveAsync().ConfigureAwait(false);
            try
            {
                _store.ThrowIfClosed();
                // Every write acknowledged before the create is made durable before the snapshot exists (as a file
                // system's sync before a snapshot): the snapshot's point in time survives a crash as it was taken. With
                // the gate held nothing is in flight, so this flushes what is already written.
                await _store.FlushAsync(cancellationToken).ConfigureAwait(false);
                // Changed-block tracking: every other snapshot's entry count, written into the new COW file and flushed
                // while I/O is quiesced, before the superblock names the file.
                await _store.Changes.RecordMarksAsync(st, cancellationToken).ConfigureAwait(false);
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
                _store.Gate.ExitExclusive();
            }
        }
        catch
        {
            // Nothing durable names the file (the superblock commit failed or never ran): it goes.
            if (added) lock (_stateLock) _snapshots = _snapshots.Where(s => s != st).ToArray();
            st.Store.Dispose();
            _store.Provider.Delete(path);
            throw;
        }
    }

    /// <summary>Refuses a create while a merge is unfinished, for a name in use, or past the limit. Under the state lock.</summary>
    private void CheckCanCreateLocked(string name, string path)
    {
        if (_merging is { } m)
            throw new SnapshotArgumentException($"{path}: cannot create a snapshot while the merge of '{m.Name}' into the origin is unfinished; run the merge again first");
        if (_snapshots.Any(s => s.Name == name)) throw new SnapshotArgumentException($"{path}: snapshot '{name}' already exists");
        if (_snapshots.Length >= SnapshotStore.MaxSnapshots) throw new SnapshotArgumentException($"{path}: the store already has {SnapshotStore.MaxSnapshots} snapshots");
    }

    /// <summary>
    /// Makes a new snapshot's COW file: created (refusing a path that exists: the store never overwrites a file),
    /// header written and flushed, and the whole configured size reserved on the file system, so a full disk later
    /// never costs the snapshot its data; with <paramref name="preallocate"/>, the whole size also written with zeros
    /// and flushed. On failure the file is removed and the error says what was needed.
    /// </summary>
    private ExceptionStore CreateCowFile(SnapshotState st, bool persistent, long cowSectors, bool preallocate)
    {
        if (_store.Provider.Exists(st.CowPath)) throw new JournalException($"{st.CowPath}: file already exists");
        // The creation mark first (durable: made like a device), so that a crash before the header leaves a file the
        // next open knows as this store's; removed below once the header is flushed, or with the file on failure.
        string mark = CreationMarkPath(st.CowPath);
        _store.Provider.Create(mark, 0).Dispose();
        ExceptionStore? store = null;
        try
        {
            if (persistent)
            {
                // The first stamp: the record committed below names it.
                st.CowStamp = 1;
                store = PersistentExceptionStore.Create(_store.Provider, st.CowPath, _store.Layout, cowSectors, GrowthSectors, st.Id, StoreId, _store.Committer, st.CowStamp);
            }
            else
            {
                var dev = _store.Provider.Create(st.CowPath, Math.Min(st.CowSectors, GrowthSectors));
                store = TransientExceptionStore.Create(dev, _store.Layout, cowSectors, GrowthSectors, st.Id, StoreId);
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
            ReportGrowthAheadFailures(store, st.Name);
            if (preallocate)
            {
                // Zeros over the whole size (the space is reserved above), durable before the snapshot is named.
                store.Cow.Extend(store.TotalSectors);
                store.Cow.Flush();
            }
            // The header is flushed: the file names its store from here on.
            RemoveCreationMark(mark);
            return store;
        }
        catch (Exception e)
        {
            store?.Dispose();
            // A file that was there already (made meanwhile by someone else) is not the store's: it stays.
            if (e is not DeviceOpenException { Error: DeviceOpenError.AlreadyExists }) _store.Provider.Delete(st.CowPath);
            RemoveCreationMark(mark);
            throw;
        }
    }

    /// <summary>Removes a creation mark; one that cannot be removed now is removed by the next open.</summary>
    private void RemoveCreationMark(string mark) => TryRemove(mark, () => _store.Provider.Delete(mark));

    /// <summary>Deletes a snapshot and its COW file. I/O is quiesced for the duration (none is lost).</summary>
    public async ValueTask DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        _store.ThrowIfClosed();
        _store.ThrowIfReadOnly("deleting a snapshot");
        ArgumentNullException.ThrowIfNull(name);
        await _store.Gate.EnterExclusiveAsync().ConfigureAwait(false);
        try
        {
            _store.ThrowIfClosed();
            SnapshotState st;
            lock (_stateLock)
            {
                st = FindLocked(name);
                if (st.Merging)
                    throw new SnapshotArgumentException($"{st.CowPath}: snapshot '{name}' is being merged into the origin (the origin needs its data); run the merge again to finish it");
            }
            RequireRemovable(st);
            await RemoveSnapshotAsync(st, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _store.Gate.ExitExclusive();
        }
    }

    /// <summary>
    /// Refuses, before anything is committed, a change that ends in removing <paramref name="st"/>'s COW file when the
    /// folder does not let it be removed (permissions, a read-only or immutable folder): the change is not made.
    /// </summary>
    public void RequireRemovable(SnapshotState st)
    {
        if (_store.Provider.WhyNotWritable(_store.Folder) is { } why)
            throw new JournalException($"{st.CowPath}: snapshot '{st.Name}' cannot be removed: {_store.Folder}: {why}; nothing was changed");
        if (_store.Provider.Exists(st.CowPath) && _store.Provider.WhyNotRemovable(st.CowPath) is { } whyFile)
            throw new JournalException($"{st.CowPath}: snapshot '{st.Name}' cannot be removed: {whyFile}; nothing was changed");
    }

    /// <summary>The snapshot named <paramref name="name"/>, or a one-line error naming its COW file. Under the state lock.</summary>
    private SnapshotState FindLocked(string name) =>
        _snapshots.FirstOrDefault(s => s.Name == name) ?? throw new SnapshotArgumentException($"{_store.CowPathOf(name)}: no snapshot named '{name}'");

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
            _unavailable = _snapshots.FirstOrDefault(s => s.Unavailable);
        }
        await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
        if (st.Store is PersistentExceptionStore ps) ps.MarkDeleted();
        if (st.Store is not null) lock (_stateLock) _graveyard.Add(st.Store);
        // The snapshot is gone (committed); a file that cannot be removed now (RequireRemovable checked what can be
        // checked beforehand) is left to the next open's sweep, which removes it then.
        TryRemove(st.CowPath, () => RemoveOwnCowFile(st.CowPath, st.Id, allowDamaged: true));
        if (st.Store?.Cow is FileBlockDevice { LinkCount: 0 } removed)
        {
            // No growth ahead of the file from here on (one running finishes first): it would take a step of the
            // space back after it is given back.
            await st.Store.StopGrowingAheadAsync().ConfigureAwait(false);
            // Its device stays open until the store closes (a write-back or a changed-block map started before the
            // delete may still use it), so the removed file's space would stay taken as long as the store runs: given
            // back now, the file then reading as zeros to whoever still has it. Only when the open file has no name
            // left: one moved or linked elsewhere by its user keeps its data.
            removed.DiscardAll();
        }
    }

    /// <summary>
    /// Removes a COW file where a failure must not fail the caller (the change is already committed, or an open's
    /// sweep of leftovers): the file stays, and one warning says so.
    /// </summary>
    private void TryRemove(string path, Action remove)
    {
        try
        {
            remove();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            SnapshotLog.CowFileNotRemoved(_store.Logger, _store.Folder, path, e.Message);
        }
    }

    public void DisposeSnapshotStores()
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

    /// <summary>
    /// Invalidates a snapshot (once): status Invalid at once, then on disk: header valid = 0 and the superblock.
    /// I/O errors during invalidation are ignored (the snapshot is unusable either way). Caller holds the gate shared
    /// or exclusive, and no lock.
    /// </summary>
    public Task InvalidateAsync(SnapshotState st, InvalidReasonCode code)
    {
        lock (_stateLock)
        {
            if (st.Invalidation is not null) return st.Invalidation;
            if (st.InvalidReason is null)
            {
                st.InvalidCode = code;
                st.InvalidReason = SnapshotStore.ReasonText(code);
            }
            string reason = st.InvalidReason;
            st.Invalidation = Task.Run(async () =>
            {
                SnapshotLog.Invalidated(_store.Logger, _store.Folder, st.Name, reason);
                try { if (st.Store is not null) await st.Store.InvalidateAsync().ConfigureAwait(false); }
                catch (IOException) { }
                try { await CommitSuperblockAsync().ConfigureAwait(false); }
                catch (Exception e) when (e is IOException or JournalException or ObjectDisposedException or InvalidOperationException) { }
            });
            return st.Invalidation;
        }
    }

    /// <summary>
    /// Merges snapshot <paramref name="name"/> into the origin and deletes it (see the remarks for the steps and the
    /// crash guarantees). Origin and snapshot I/O wait while it runs. Runs again from the start after an interrupted or
    /// failed merge. <paramref name="progress"/> gets (chunks done, chunks to merge) after each chunk.
    /// </summary>
    /// <exception cref="JournalArgumentException">No such snapshot, a transient or invalid one, or another merge unfinished.</exception>
    /// <exception cref="JournalException">The merge failed (one line: the COW file, the snapshot and the error); run it again.</exception>
    public async ValueTask MergeSnapshotAsync(string name, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        _store.ThrowIfClosed();
        _store.ThrowIfReadOnly("merging a snapshot");
        ArgumentNullException.ThrowIfNull(name);
        await _store.Gate.EnterExclusiveAsync().ConfigureAwait(false);
        try
        {
            _store.ThrowIfClosed();
            SnapshotState st;
            bool starting;
            lock (_stateLock) st = FindLocked(name);
            ThrowIfUnavailable(st.Unavailable ? "merging it" : "a merge into the origin");
            RequireRemovable(st); // the merge ends in the delete: refused before the origin changes, not at the end
            lock (_stateLock)
            {
                if (_merging is { } other && other != st)
                    throw new SnapshotArgumentException($"{st.CowPath}: the merge of '{other.Name}' into the origin is unfinished; run it again first");
                if (st.Kind == SnapshotKind.Transient)
                    throw new SnapshotArgumentException($"{st.CowPath}: snapshot '{name}' is transient; only persistent snapshots can be merged");
                if (!st.IsValid)
                    throw new SnapshotArgumentException($"{st.CowPath}: snapshot '{name}' is invalid ({st.InvalidReason}); it cannot be merged");
                starting = !st.Merging;
                st.Merging = true;
                st.MergeFailure = null;
                _merging = st;
            }
            try
            {
                // The mark is durable before the first origin chunk changes: from here a crash reopens merging.
                if (starting) await CommitSuperblockAsync(cancellationToken).ConfigureAwait(false);
                await CopyHomeAsync(st, progress, cancellationToken).ConfigureAwait(false);
                await _store.OriginDevice.FlushAsync(cancellationToken).ConfigureAwait(false);
                await RemoveSnapshotAsync(st, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                throw; // not a failure: the merge is unfinished and runs again from the start
            }
            catch (Exception e) when (e is IOException or JournalException or SnapshotInvalidException or InvalidOperationException)
            {
                string why = OneLine(e.Message);
                lock (_stateLock) st.MergeFailure = why;
                SnapshotLog.MergeFailed(_store.Logger, _store.Folder, name, why);
                throw new JournalException($"{st.CowPath}: merge of snapshot '{name}' into the origin failed: {why}; the origin reads as the snapshot until the merge is run again and finishes", e);
            }
        }
        finally
        {
            _store.Gate.ExitExclusive();
        }
    }

    /// <summary>Step 3 of a merge: every chunk of <paramref name="st"/>'s COW file written home, one at a time. Gate held exclusively.</summary>
    private async ValueTask CopyHomeAsync(SnapshotState st, IProgress<(long Done, long Total)>? progress, CancellationToken cancellationToken)
    {
        List<(ulong Old, ulong New)> chunks;
        lock (_stateLock) chunks = st.Complete.ToList(); // ordered by old chunk
        var buffer = new byte[(int)_store.Layout.ChunkBytes];
        long done = 0;
        progress?.Report((0, chunks.Count));
        foreach (var (oldChunk, newChunk) in chunks)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await st.Store!.Cow.ReadAsync(_store.Layout.ChunkToSector(newChunk), buffer, cancellationToken).ConfigureAwait(false);
            await _store.DataPath.WriteRunAsync(oldChunk, oldChunk, _store.Layout.ChunkToSector(oldChunk), buffer, cancellationToken, admitted: null, merge: true).ConfigureAwait(false);
            progress?.Report((++done, chunks.Count));
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
