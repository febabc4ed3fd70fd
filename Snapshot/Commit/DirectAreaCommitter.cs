using Snapshot.Exceptions;

namespace Snapshot.Commit;

/// <summary>
/// Commits a round's exceptions the dm-snapshot way, without a journal: each COW file's changed metadata areas are
/// rewritten in place and the file flushed (the files of a round in parallel). Durable when the commit returns. Used
/// as the benchmark baseline (the scheme this store's journal replaces) and crash-tested like the journal mode.
/// </summary>
internal sealed class DirectAreaCommitter : IMetadataCommitter
{
    private long _writes;

    public string Name => "direct-area";

    public long DurabilityWaits => Interlocked.Read(ref _writes);

    public long Transactions => Interlocked.Read(ref _writes);

    public CowMetadata Attach(PersistentExceptionStore store, MetadataArea current) => new AreaMetadata(store, current);

    public async ValueTask<ulong> CommitAsync(CommitRound round, CancellationToken cancellationToken)
    {
        var commits = new List<(CommitRound.Group Group, Task Task)>(round.GroupCount);
        for (int i = 0; i < round.GroupCount; i++)
        {
            var g = round.Groups[i];
            if (g.Error is not null || !g.Store.IsValid || g.Items.Count == 0) continue;
            commits.Add((g, ((AreaMetadata)g.Store.Metadata).CommitAsync(g.Items, cancellationToken).AsTask()));
        }
        foreach (var (g, task) in commits)
        {
            try { await task.ConfigureAwait(false); }
            catch (Exception e) { g.Error = e; }
            Interlocked.Increment(ref _writes);
        }
        return 0; // durable already
    }

    public ValueTask WaitDurableAsync(ulong ticket, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}
