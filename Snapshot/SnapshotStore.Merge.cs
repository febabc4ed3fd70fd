using Journal;

namespace Snapshot;

/// <summary>
/// Merging a snapshot back into the origin (the dm-snapshot <c>snapshot-merge</c> idea): afterwards the origin holds
/// what the snapshot showed, and the snapshot is gone.
/// </summary>
/// <remarks>
/// <para><b>Steps.</b> (1) Gate exclusive: no I/O is in flight and none starts until the merge returns. (2) Mark the
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
public sealed partial class SnapshotStore
{
    /// <summary>
    /// Merges snapshot <paramref name="name"/> into the origin and deletes it (see the remarks for the steps and the
    /// crash guarantees). Origin and snapshot I/O wait while it runs. Runs again from the start after an interrupted or
    /// failed merge. <paramref name="progress"/> gets (chunks done, chunks to merge) after each chunk.
    /// </summary>
    /// <exception cref="JournalArgumentException">No such snapshot, a transient or invalid one, or another merge unfinished.</exception>
    /// <exception cref="JournalException">The merge failed (one line: the COW file, the snapshot and the error); run it again.</exception>
    public async ValueTask MergeSnapshotAsync(string name, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ThrowIfClosed();
        ThrowIfReadOnly("merging a snapshot");
        ArgumentNullException.ThrowIfNull(name);
        await _gate.EnterExclusiveAsync().ConfigureAwait(false);
        try
        {
            ThrowIfClosed();
            SnapshotState st;
            bool starting;
            lock (_stateLock) st = FindLocked(name);
            RequireRemovable(st); // the merge ends in the delete: refused before the origin changes, not at the end
            lock (_stateLock)
            {
                if (_merging is { } other && other != st)
                    throw new JournalArgumentException($"{st.CowPath}: the merge of '{other.Name}' into the origin is unfinished; run it again first");
                if (st.Kind == SnapshotKind.Transient)
                    throw new JournalArgumentException($"{st.CowPath}: snapshot '{name}' is transient; only persistent snapshots can be merged");
                if (!st.IsValid)
                    throw new JournalArgumentException($"{st.CowPath}: snapshot '{name}' is invalid ({st.InvalidReason}); it cannot be merged");
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
                await _origin.FlushAsync(cancellationToken).ConfigureAwait(false);
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
                throw new JournalException($"{st.CowPath}: merge of snapshot '{name}' into the origin failed: {why}; the origin reads as the snapshot until the merge is run again and finishes", e);
            }
        }
        finally
        {
            _gate.ExitExclusive();
        }
    }

    /// <summary>Step 3 of a merge: every chunk of <paramref name="st"/>'s COW file written home, one at a time. Gate held exclusively.</summary>
    private async ValueTask CopyHomeAsync(SnapshotState st, IProgress<(long Done, long Total)>? progress, CancellationToken cancellationToken)
    {
        List<(ulong Old, ulong New)> chunks;
        lock (_stateLock) chunks = st.Complete.ToList(); // ordered by old chunk
        var buffer = new byte[(int)_layout.ChunkBytes];
        long done = 0;
        progress?.Report((0, chunks.Count));
        foreach (var (oldChunk, newChunk) in chunks)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await st.Store!.Cow.ReadAsync(_layout.ChunkToSector(newChunk), buffer, cancellationToken).ConfigureAwait(false);
            await _dataPath.WriteRunAsync(oldChunk, oldChunk, _layout.ChunkToSector(oldChunk), buffer, cancellationToken, admitted: null, merge: true).ConfigureAwait(false);
            progress?.Report((++done, chunks.Count));
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
