using Journal;
using Snapshot.Exceptions;

namespace Snapshot.Changes;

/// <summary>
/// Changed-block tracking: which chunks differ between two snapshots of the origin, or between a snapshot and the
/// origin now, derived from what the store already keeps crash-safe — the exception tables, the order in which each
/// COW file committed its exceptions, a table of creation marks per snapshot, and a per-snapshot <i>written</i> flag.
/// Nothing else is kept, so a map survives every crash the store survives. <c>docs/changed-blocks.md</c> has the
/// semantics and the argument; in short, for A older than B and chunk c:
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>A holds c, B does not: reported (the origin changed between A and B, or A was written).</item>
/// <item>B holds c, A does not: reported (B was written: an origin write after B would have given A an exception too).</item>
/// <item>Both hold c, and A's exception for c was committed before B was created — its entry index in A's metadata is
/// below the count B's creation marks recorded for A: reported (the origin changed between them).</item>
/// <item>Both hold c, committed after B was created: both copies were taken by the same first origin write after B,
/// from the same origin chunk, so A and B are equal there — unless A or B was ever written by a user (the written
/// flag): then the two chunks are compared, the one case that reads data.</item>
/// <item>Neither holds c: both read the origin chunk: equal.</item>
/// </list>
/// <para><c>changed(A → origin)</c> is A's exception set (plus, while a merge of M into the origin is unfinished, M's:
/// the origin reads M's chunks there).</para>
/// <para><b>Creation marks</b> (<see cref="ChangeMarks"/>): recorded while a snapshot is created, with I/O quiesced
/// (the store's gate held exclusively: no copy in flight, every exception appended is committed), written into the new
/// COW file and flushed before the superblock that names it is committed — so by the store's create order they exist
/// whenever the snapshot does.</para>
/// <para><b>The written flag</b> (<c>SnapshotRecordFlags.Written</c> in the superblock record): committed through the
/// journal and forced before the first user write into a snapshot starts (<see cref="MarkWrittenAsync"/>), once per
/// snapshot; so no write into a snapshot can be on disk while the flag is not.</para>
/// <para><b>Entry order</b>: read on demand from the older snapshot's metadata areas and the journal's in-memory
/// segments (<see cref="EntryOrderReader"/>), only up to the mark: no memory per exception is kept for it.</para>
/// <para>Locking: <c>_lock</c> (a leaf monitor) protects the marks cache and the map cache, for dictionary work only;
/// it may be taken under the store's state lock, never the other way round. The state lock is taken to copy the
/// exception tables' runs and the flags (in-memory work proportional to the runs, never across an await: for 10^6
/// scattered exceptions a few milliseconds in which the data path waits for the lock). Waits: marking a snapshot written
/// holds the store's gate shared across the superblock commit (the commit's own rule), and nothing else; computing a
/// map holds nothing across its reads (a snapshot deleted meanwhile keeps its COW file open until the store closes,
/// and the result is checked against the snapshot list at the end).</para>
/// </remarks>
internal sealed class ChangeTracker
{
    /// <summary>Maps kept for repeated queries (NBD BLOCK_STATUS asks range by range).</summary>
    private const int CachedMaps = 4;

    /// <summary>Chunks compared at once.</summary>
    private const int CompareConcurrency = 8;

    private const int ComparePieceBytes = 1 << 20;

    private readonly SnapshotStore _store;
    private readonly object _lock = new();
    private readonly Dictionary<ulong, MarksEntry> _marks = new();
    private readonly LinkedList<(MapKey Key, ChangedExtents Map)> _maps = new();

    public ChangeTracker(SnapshotStore store) => _store = store;

    /// <summary>
    /// The marks of one snapshot as far as they are known: the table, none, or why they cannot be trusted;
    /// <paramref name="MemoryOnly"/> for a transient snapshot's, which exist nowhere else.
    /// </summary>
    private sealed record MarksEntry(ChangeMarks? Marks, string? Damage, bool MemoryOnly = false);

    /// <summary>Everything a map depends on: when none of it changed, a cached map is still the answer.</summary>
    private readonly record struct MapKey(ulong AId, long ACount, long AWrites, bool AWritten, ulong BId, long BCount, long BWrites,
        bool BWritten, ulong MId, long MCount);

    // ---- creation marks --------------------------------------------------------------------------------------------

    /// <summary>Hook at snapshot create, right after the COW file is made: reserves the chunks of its marks table.</summary>
    public static void ReserveMarks(SnapshotState st)
    {
        if (st.Store is PersistentExceptionStore ps) ps.ReserveCreationMarks();
    }

    /// <summary>
    /// Hook at snapshot create, with the gate held exclusively and before <paramref name="st"/> joins the snapshot list:
    /// records every valid persistent snapshot's entry count, and for a persistent snapshot with room for the table,
    /// writes it into its COW file and flushes (before the superblock names the file).
    /// </summary>
    public async ValueTask RecordMarksAsync(SnapshotState st, CancellationToken cancellationToken)
    {
        var entries = new List<(ulong, long)>();
        lock (_store.StateLock)
        {
            // The gate is held exclusively: no exception is pending and none is being appended, so every count is the
            // exact number of entries committed before this snapshot exists.
            foreach (var s in _store.Catalog.SnapshotsUnsafe)
                if (s != st && s.Kind == SnapshotKind.Persistent && s.IsValid && s.Store is PersistentExceptionStore ps)
                    entries.Add((s.Id, ps.Metadata.EntryCount));
        }
        entries.Sort((x, y) => x.Item1.CompareTo(y.Item1));
        var marks = new ChangeMarks(st.Id, entries);
        if (st.Store is PersistentExceptionStore own)
        {
            // Only what is on disk counts (a COW file too small for the table has no marks, now or after a reopen).
            if (own.MarksChunk == 0) return;
            // Why we wait: the table's write and flush (synchronous I/O, like the COW file's creation, on a pool thread).
            await Task.Run(() => own.WriteCreationMarks(marks), cancellationToken).ConfigureAwait(false);
        }
        lock (_lock) _marks[st.Id] = new MarksEntry(marks, null, MemoryOnly: st.Store is not PersistentExceptionStore);
    }

    /// <summary>
    /// The creation marks of <paramref name="b"/>: from memory, or read once from its COW file and checked. Null when it
    /// has none (a COW file made before marks existed or too small for them, or a transient snapshot). Throws when the
    /// table does not read back as written.
    /// </summary>
    private async ValueTask<ChangeMarks?> GetMarksAsync(SnapshotState b, CancellationToken cancellationToken)
    {
        MarksEntry? known;
        lock (_lock) _marks.TryGetValue(b.Id, out known);
        if (known is null)
        {
            known = new MarksEntry(null, null);
            if (b.Store is PersistentExceptionStore { MarksChunk: not 0 } ps)
            {
                var table = new byte[ps.MarksChunks * ps.Layout.ChunkBytes];
                try
                {
                    // Why we wait: the table's read (one or two chunks, once per snapshot and open). Nothing is held.
                    await ps.Cow.ReadAsync(ps.Layout.ChunkToSector(ps.MarksChunk), table, cancellationToken).ConfigureAwait(false);
                    var marks = ChangeMarks.TryRead(table, b.Id, ps.MarksCount, out string? problem);
                    known = new MarksEntry(marks, problem);
                }
                catch (Exception e) when (e is IOException or JournalException)
                {
                    known = new MarksEntry(null, $"creation-marks table cannot be read: {e.Message.ReplaceLineEndings(" ")}");
                }
            }
            lock (_lock) _marks[b.Id] = known;
        }
        if (known.Damage is not null)
            throw new ChangeTrackingException($"{b.CowPath}: snapshot '{b.Name}': {known.Damage} (chunk 2); its changes against older snapshots cannot be listed");
        return known.Marks;
    }

    // ---- the written flag ------------------------------------------------------------------------------------------

    /// <summary>
    /// Hook before every user write into a snapshot: the first one commits the snapshot's written flag through the
    /// journal and forces it before returning; later ones return at once. A snapshot that cannot be written (deleted,
    /// invalid, merging) is left alone: the write itself then fails with the reason.
    /// </summary>
    public async ValueTask MarkWrittenAsync(SnapshotState st, CancellationToken cancellationToken)
    {
        if (st.WrittenDurable) return;
        // Why we wait: a snapshot create, delete or merge holds the gate; the superblock commit needs it held (shared).
        await _store.Gate.EnterSharedAsync().ConfigureAwait(false);
        if (_store.IsClosed)
        {
            // A close held the gate while we waited: its devices are gone.
            _store.Gate.ExitShared();
            _store.ThrowIfClosed();
        }
        try
        {
            TaskCompletionSource? mine = null;
            Task commit;
            lock (_store.StateLock)
            {
                if (st.WrittenDurable || st.Deleted || !st.IsValid || st.Merging) return;
                if (st.WrittenCommit is null || st.WrittenCommit.IsFaulted || st.WrittenCommit.IsCanceled)
                {
                    st.Written = true; // from now on every superblock commit carries it
                    mine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    st.WrittenCommit = mine.Task;
                }
                commit = st.WrittenCommit;
            }
            if (mine is not null)
            {
                try
                {
                    await _store.CommitSuperblockAsync(CancellationToken.None).ConfigureAwait(false);
                    st.WrittenDurable = true;
                    mine.SetResult();
                }
                catch (Exception e)
                {
                    mine.SetException(e); // the next writer tries again; no write goes through before a commit succeeds
                    throw;
                }
            }
            else
            {
                // Why we wait: another writer's commit of the same flag; it holds the gate shared too, nothing else.
                await commit.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _store.Gate.ExitShared();
        }
    }

    // ---- maps ------------------------------------------------------------------------------------------------------

    /// <summary>
    /// The chunks where <paramref name="from"/>'s view differs from <paramref name="to"/>'s (an newer snapshot), or from
    /// the origin's (<paramref name="to"/> null or <c>origin</c>). See the class remarks.
    /// </summary>
    /// <exception cref="JournalArgumentException">No such snapshot; <paramref name="from"/> newer than <paramref name="to"/>.</exception>
    /// <exception cref="SnapshotInvalidException">One of them is invalid.</exception>
    /// <exception cref="ChangeTrackingException">One is being merged, or the marks or metadata do not read back as written.</exception>
    public async ValueTask<ChangedExtents> GetAsync(string from, string? to, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(from);
        _store.ThrowIfClosed();
        if (to == "origin") to = null;
        SnapshotState a;
        SnapshotState? b = null, m = null;
        var runsA = new List<(ulong, int)>();
        var runsB = new List<(ulong, int)>();
        var pendingA = new List<ulong>();
        MapKey key;
        lock (_store.StateLock)
        {
            a = UsableLocked(from);
            if (to is not null)
            {
                b = UsableLocked(to);
                if (a.Id > b.Id)
                    throw new JournalArgumentException($"{a.CowPath}: snapshot '{a.Name}' is newer than '{b.Name}': give the older snapshot first");
            }
            var merging = _store.Catalog.MergingUnsafe;
            if (to is null && merging is not null) m = merging;
            // Copies of A in flight or waiting for their round: each one's origin write may already have returned
            // (StoreOptions.DeferCopiedWrites returns before the round commits), so its chunk is changed now. They are laid
            // over the map (cached or not) at each call, outside the cache: they move as rounds complete, and a chunk that
            // completes joins A's table, which changes the key.
            if (to is null && a.Pending.Count > 0) pendingA.AddRange(a.Pending.Keys);
            key = new MapKey(a.Id, a.Complete.Count, Interlocked.Read(ref a.UserWrites), a.Written,
                b?.Id ?? 0, b?.Complete.Count ?? 0, b is null ? 0 : Interlocked.Read(ref b.UserWrites), b?.Written ?? false,
                m?.Id ?? 0, m?.Complete.Count ?? 0);
            lock (_lock)
            {
                for (var node = _maps.First; node is not null; node = node.Next)
                {
                    if (node.Value.Key != key) continue;
                    _maps.Remove(node);
                    _maps.AddFirst(node);
                    return WithPending(node.Value.Map, pendingA);
                }
            }
            a.Complete.CopyRunsTo(runsA);
            if (b is not null) b.Complete.CopyRunsTo(runsB);
            else if (m is not null) m.Complete.CopyRunsTo(runsB);
        }

        try
        {
            var setA = ChunkRuns.FromRuns(runsA);
            var setB = ChunkRuns.FromRuns(runsB);
            long considered = (long)setA.Chunks + (long)setB.Chunks;
            long entriesRead = 0, metadataBytes = 0, compared = 0, comparedBytes = 0;
            ChunkRuns result;
            if (b == a)
            {
                result = ChunkRuns.Empty; // a snapshot against itself: nothing changed
            }
            else if (b is null)
            {
                result = m is null ? setA : ChunkRuns.Union(setA, setB);
            }
            else
            {
                result = ChunkRuns.SymmetricExcept(setA, setB);
                var both = ChunkRuns.Intersect(setA, setB);
                if (both.Chunks > 0)
                {
                    ChunkRuns ambiguous = both;
                    // Why we wait (here and below): reads of B's marks, of A's metadata up to the mark, and of both views for
                    // the comparison. Nothing is held; the snapshots are checked again at the end.
                    var marks = await GetMarksAsync(b, cancellationToken).ConfigureAwait(false);
                    // B's marks do not list A when A was unavailable while B was created (its COW file missing or
                    // unreadable, put back since): which of A's exceptions came before B is then not known, and every
                    // chunk both hold is compared (exact, and the one case that reads data for that reason).
                    if (marks?.CountOf(a.Id) is { } n && a.Store is PersistentExceptionStore psA)
                    {
                        long now = psA.Metadata.EntryCount;
                        if (n > now)
                            throw new ChangeTrackingException($"{b.CowPath}: the creation marks of snapshot '{b.Name}' count {n} exceptions of '{a.Name}', whose COW file {a.CowPath} has {now}");
                        var (prefix, bytes) = await EntryOrderReader.ReadAsync(psA, n, _store.OriginSectors / _store.ChunkSectors, cancellationToken).ConfigureAwait(false);
                        entriesRead = n;
                        metadataBytes = bytes;
                        var before = ChunkRuns.FromChunks(prefix);
                        if (ChunkRuns.Except(before, setA).Chunks > 0)
                            throw new ChangeTrackingException($"{a.CowPath}: exception entries of snapshot '{a.Name}' name chunks its exception table does not hold");
                        result = ChunkRuns.Union(result, ChunkRuns.Intersect(both, before));
                        ambiguous = ChunkRuns.Except(both, before);
                        if (!key.AWritten && !key.BWritten) ambiguous = ChunkRuns.Empty; // case 4: equal
                    }
                    if (ambiguous.Chunks > 0)
                    {
                        var (differ, bytesCompared) = await CompareAsync(a, b, ambiguous, cancellationToken).ConfigureAwait(false);
                        compared = (long)ambiguous.Chunks;
                        comparedBytes = bytesCompared;
                        result = ChunkRuns.Union(result, differ);
                    }
                }
            }

            lock (_store.StateLock)
            {
                // Deleted, invalidated or merged while the map was computed: an error, like at the start.
                RecheckLocked(a);
                if (b is not null) RecheckLocked(b);
            }
            var map = new ChangedExtents(a.Name, b?.Name ?? "origin", _store.OriginSectors, _store.ChunkSectors, result,
                new ChangeMapCost(considered, entriesRead, metadataBytes, compared, comparedBytes), key.AWritten, key.BWritten);
            lock (_lock)
            {
                _maps.AddFirst((key, map));
                while (_maps.Count > CachedMaps) _maps.RemoveLast();
            }
            return WithPending(map, pendingA);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A read that failed because the store was closed, or a snapshot deleted (its file given back: it reads as
            // zeros) or invalidated while the map was computed, is reported as that, not as damage.
            _store.ThrowIfClosed();
            lock (_store.StateLock)
            {
                RecheckLocked(a);
                if (b is not null) RecheckLocked(b);
            }
            throw;
        }
    }

    /// <summary><paramref name="map"/> with the chunks of <paramref name="pending"/> (copies not yet committed) added.</summary>
    private static ChangedExtents WithPending(ChangedExtents map, List<ulong> pending)
    {
        if (pending.Count == 0) return map;
        var runs = ChunkRuns.Union(map.Runs, ChunkRuns.FromChunks(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(pending)));
        return new ChangedExtents(map.From, map.To, map.VolumeSectors, map.ChunkSectors, runs, map.Cost, map.FromWritten, map.ToWritten);
    }

    /// <summary>The snapshot named <paramref name="name"/>, usable for a map. Under the state lock.</summary>
    private SnapshotState UsableLocked(string name)
    {
        var st = _store.Catalog.SnapshotsUnsafe.FirstOrDefault(s => s.Name == name)
            ?? throw new JournalArgumentException($"{_store.CowPathOf(name)}: no snapshot named '{name}'");
        RecheckLocked(st);
        return st;
    }

    private static void RecheckLocked(SnapshotState st)
    {
        if (st.Deleted) throw new JournalArgumentException($"{st.CowPath}: no snapshot named '{st.Name}' (it was deleted)");
        if (st.Merging)
            throw new ChangeTrackingException($"{st.CowPath}: snapshot '{st.Name}' is being merged into the origin; its changes cannot be listed (run the merge again to finish it)");
        if (!st.IsValid) throw st.NotValidError();
    }

    /// <summary>
    /// The chunks of <paramref name="chunks"/> whose contents differ between <paramref name="a"/> and
    /// <paramref name="b"/> (read through the volumes, a few chunks at once), and the bytes read.
    /// </summary>
    private async ValueTask<(ChunkRuns Differ, long BytesRead)> CompareAsync(SnapshotState a, SnapshotState b, ChunkRuns chunks, CancellationToken cancellationToken)
    {
        int chunkSectors = _store.ChunkSectors;
        long chunkBytes = chunkSectors * 512L;
        int piece = (int)Math.Min(chunkBytes, ComparePieceBytes);
        var differ = new List<ulong>();
        long bytesRead = 0;
        var next = ChunkCursor(chunks);
        var workers = new Task[(int)Math.Min(CompareConcurrency, (long)chunks.Chunks)];
        object gather = new();
        for (int w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                var bufA = new byte[piece];
                var bufB = new byte[piece];
                while (true)
                {
                    ulong chunk;
                    lock (gather)
                    {
                        if (!next.MoveNext()) return;
                        chunk = next.Current;
                    }
                    long sector = (long)chunk * chunkSectors;
                    bool same = true;
                    long read = 0;
                    for (long off = 0; off < chunkBytes && same; off += piece)
                    {
                        long s = sector + off / 512;
                        // Why we wait: the reads of both views; each takes the store's gate shared for itself.
                        await a.Volume!.ReadAsync(s, bufA, cancellationToken).ConfigureAwait(false);
                        await b.Volume!.ReadAsync(s, bufB, cancellationToken).ConfigureAwait(false);
                        read += 2L * piece;
                        same = bufA.AsSpan().SequenceEqual(bufB);
                    }
                    lock (gather)
                    {
                        bytesRead += read;
                        if (!same) differ.Add(chunk);
                    }
                }
            }, cancellationToken);
        }
        // Why we wait: the comparing tasks above; they hold nothing but their buffers.
        await Task.WhenAll(workers).ConfigureAwait(false);
        return (ChunkRuns.FromChunks(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(differ)), bytesRead);
    }

    private static IEnumerator<ulong> ChunkCursor(ChunkRuns runs)
    {
        for (int i = 0; i < runs.Count; i++)
            for (ulong c = runs[i].Start; c < runs[i].End; c++) yield return c;
    }

    /// <summary>Forgets the cached maps and the marks read from disk (the benchmark times a map computed from nothing).</summary>
    internal void ForgetCaches()
    {
        lock (_lock)
        {
            _maps.Clear();
            foreach (var id in _marks.Where(m => !m.Value.MemoryOnly).Select(m => m.Key).ToList()) _marks.Remove(id);
        }
    }

    /// <inheritdoc/>
    public override string ToString()
    {
        lock (_lock) return $"ChangeTracker({_marks.Count} marks known, {_maps.Count} maps cached)";
    }
}
