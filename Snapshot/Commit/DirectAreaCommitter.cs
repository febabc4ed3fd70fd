using System.Runtime.CompilerServices;
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
    private ValueTask[] _commits = new ValueTask[8];
    private bool[] _started = new bool[8];

    public string Name => "direct-area";

    /// <summary>None: each commit writes and flushes the areas before it returns.</summary>
    public Journal.Storage.BlockDevice? FlushCarrier => null;

    public long DurabilityWaits => Interlocked.Read(ref _writes);

    public long Transactions => Interlocked.Read(ref _writes);

    public CowMetadata Attach(PersistentExceptionStore store, MetadataArea current) => new AreaMetadata(store, current);

    /// <remarks>Not thread-safe: the pipeline calls it for one round at a time (the array of commits is its own).</remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ulong> CommitAsync(CommitRound round, CancellationToken cancellationToken)
    {
        int n = round.GroupCount;
        if (_commits.Length < n)
        {
            _commits = new ValueTask[Math.Max(n, _commits.Length * 2)];
            _started = new bool[_commits.Length];
        }
        for (int i = 0; i < n; i++)
        {
            var g = round.Groups[i];
            _commits[i] = default;
            _started[i] = g.Error is null && g.Store.IsValid && g.Items.Count > 0;
            if (!_started[i]) continue;
            try { _commits[i] = ((AreaMetadata)g.Store.Metadata).CommitAsync(g.Items, cancellationToken); }
            catch (Exception e) { _commits[i] = ValueTask.FromException(e); }
        }
        for (int i = 0; i < n; i++)
        {
            if (!_started[i]) continue;
            var g = round.Groups[i];
            // Why we wait: this file's area writes and flush, started above with the others'.
            try { await _commits[i].ConfigureAwait(false); }
            catch (Exception e) { g.Error = e; }
            finally { _commits[i] = default; }
            Interlocked.Increment(ref _writes);
        }
        return 0; // durable already
    }

    public ValueTask WaitDurableAsync(ulong ticket, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}
