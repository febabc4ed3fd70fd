using System.Diagnostics;
using Journal.Storage;
using Snapshot.Exceptions;

namespace Snapshot.Commit;

/// <summary>
/// The store-wide commit pipeline: every exception whose copy is written, of every snapshot, is committed by rounds
/// of this one pipeline (not by one round per COW file).
/// </summary>
/// <remarks>
/// <para>A <b>round</b> takes every exception queued since the previous round and:</para>
/// <list type="number">
/// <item>flushes each COW file that has copies in the round, all at once (the data is durable before any metadata can
/// point at it);</item>
/// <item>commits every file's exceptions through the <see cref="IMetadataCommitter"/> (the journal: one transaction,
/// split only when it would not fit the log, then one log force);</item>
/// <item>completes the exceptions once the commit is durable.</item>
/// </list>
/// <para><b>Rounds overlap</b>: step 3 waits in the background, so while round N's log force is in flight, round N+1
/// gathers exceptions and flushes its COW data. Steps 1 and 2 run for one round at a time, in round order, so the
/// commit order is the journal's sequence order, and a durable round implies every earlier one is. At most
/// <see cref="MaxRoundsWaiting"/> rounds wait for durability at once.</para>
/// <para>Locking: <c>_lock</c> (a leaf monitor) protects the queue, the pump flag, the round pool and the statistics;
/// held for a few instructions, never across an await, and nothing is taken under it. The pump is one task at a
/// time (started by the enqueue that finds it idle, ending when it finds the queue empty), so steps 1 and 2 never run
/// concurrently with themselves. Waits and why: the pump waits for a free durability slot (the oldest waiting round
/// completes; it holds nothing anyone else needs), for the COW flushes and for the commit (which takes the journal's
/// log space and the segment locks, see <see cref="JournalCommitter"/>). Nothing in here ever enters the store's I/O
/// gate or takes its state lock, so a writer that holds the gate while it waits for its exceptions cannot block a
/// round.</para>
/// </remarks>
internal sealed class CommitPipeline
{
    /// <summary>Most rounds waiting for durability at once (log forces in flight).</summary>
    public const int MaxRoundsWaiting = 4;

    private readonly IMetadataCommitter _committer;
    private readonly object _lock = new();
    private CommitRound _collecting = new();
    private readonly Stack<CommitRound> _free = new();
    private bool _pumping;
    private Task _pump = Task.CompletedTask;
    private readonly SemaphoreSlim _waitingSlots = new(MaxRoundsWaiting, MaxRoundsWaiting);
    private long _nextRound;

    // Statistics (under _lock).
    private long _rounds, _exceptions, _cowFlushes, _largest, _roundTicks, _failedRounds;

    public CommitPipeline(IMetadataCommitter committer) => _committer = committer;

    /// <summary>The committer the rounds use.</summary>
    public IMetadataCommitter Committer => _committer;

    /// <summary>
    /// Queues <paramref name="pe"/>, whose data is written to its COW file, for the next round; completion is signalled
    /// on the exception (<see cref="PendingException.CommitTask"/>). Never waits.
    /// </summary>
    public void Enqueue(PendingException pe)
    {
        lock (_lock)
        {
            if (_collecting.Items.Count == 0) _collecting.FirstQueuedTicks = Stopwatch.GetTimestamp();
            _collecting.Items.Add(pe);
            if (_pumping) return;
            _pumping = true;
            _pump = Task.Run(PumpAsync);
        }
    }

    /// <summary>
    /// Waits until the pump has stopped. Every queued exception's writer waits for its completion before it leaves the
    /// store's I/O gate, so once the gate is held exclusively nothing is queued; this only lets the last pump finish.
    /// </summary>
    public async Task DrainAsync()
    {
        Task pump;
        lock (_lock) pump = _pump;
        await pump.ConfigureAwait(false);
    }

    private async Task PumpAsync()
    {
        while (true)
        {
            CommitRound round;
            lock (_lock)
            {
                if (_collecting.Items.Count == 0)
                {
                    _pumping = false;
                    return;
                }
                round = _collecting;
                _collecting = _free.Count > 0 ? _free.Pop() : new CommitRound();
                round.Number = ++_nextRound;
            }
            // Why we wait: at most MaxRoundsWaiting rounds wait for durability; the oldest frees a slot when its
            // force completes. The pump holds nothing another thread needs meanwhile.
            await _waitingSlots.WaitAsync().ConfigureAwait(false);
            round.GroupByFile();
            await FlushCowFilesAsync(round).ConfigureAwait(false);
            ulong ticket = 0;
            Exception? commitError = null;
            try
            {
                if (round.CommittableCount > 0) ticket = await _committer.CommitAsync(round, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                commitError = e;
            }
            _ = CompleteWhenDurableAsync(round, ticket, commitError);
        }
    }

    /// <summary>Step 1: flushes every COW file of the round at once; a file whose flush fails fails its group.</summary>
    private async ValueTask FlushCowFilesAsync(CommitRound round)
    {
        int n = round.GroupCount;
        if (n == 1)
        {
            var g = round.Groups[0];
            try { await g.Store.FlushDataAsync(CancellationToken.None).ConfigureAwait(false); }
            catch (Exception e) { g.Error = e; }
        }
        else
        {
            var flushes = new Task[n];
            for (int i = 0; i < n; i++) flushes[i] = round.Groups[i].Store.FlushDataAsync(CancellationToken.None).AsTask();
            for (int i = 0; i < n; i++)
            {
                try { await flushes[i].ConfigureAwait(false); }
                catch (Exception e) { round.Groups[i].Error = e; }
            }
        }
        lock (_lock) _cowFlushes += n;
    }

    /// <summary>Step 3: waits for the round to be durable, then completes its exceptions and frees the slot.</summary>
    private async Task CompleteWhenDurableAsync(CommitRound round, ulong ticket, Exception? error)
    {
        try
        {
            if (error is null && ticket != 0) await _committer.WaitDurableAsync(ticket, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            error = e;
        }
        long now = Stopwatch.GetTimestamp();
        for (int i = 0; i < round.GroupCount; i++)
        {
            var g = round.Groups[i];
            var groupError = g.Error ?? error;
            foreach (var pe in g.Items) pe.CompleteCommit(groupError);
        }
        lock (_lock)
        {
            _rounds++;
            _exceptions += round.Items.Count;
            if (round.Items.Count > _largest) _largest = round.Items.Count;
            _roundTicks += now - round.FirstQueuedTicks;
            if (error is not null) _failedRounds++;
            round.Reset();
            if (_free.Count < MaxRoundsWaiting + 2) _free.Push(round);
        }
        _waitingSlots.Release();
    }

    /// <summary>Counters since open.</summary>
    public CommitPipelineStatistics Statistics
    {
        get
        {
            lock (_lock)
                return new CommitPipelineStatistics(_committer.Name, _rounds, _exceptions, _cowFlushes, _committer.Transactions, _committer.DurabilityWaits, _largest,
                    TimeSpan.FromSeconds((double)_roundTicks / Stopwatch.Frequency), _failedRounds);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"CommitPipeline({Statistics})";
}

/// <summary>What the commit pipeline has done since the store was opened.</summary>
/// <param name="Committer">"journal" or "direct-area".</param>
/// <param name="Rounds">Rounds completed.</param>
/// <param name="Exceptions">Exceptions those rounds took.</param>
/// <param name="CowFlushes">COW file flushes issued by rounds (one per file per round).</param>
/// <param name="Transactions">Journal transactions (more than the rounds when a round was split to fit the log), or area commits.</param>
/// <param name="DurabilityWaits">Log forces (journal) or durable area writes (direct) issued.</param>
/// <param name="LargestRound">Most exceptions in one round.</param>
/// <param name="WaitTime">Total time from the first exception queued in a round to the round's completion.</param>
/// <param name="FailedRounds">Rounds whose commit or durability wait failed.</param>
public sealed record CommitPipelineStatistics(string Committer, long Rounds, long Exceptions, long CowFlushes, long Transactions, long DurabilityWaits,
    long LargestRound, TimeSpan WaitTime, long FailedRounds)
{
    /// <summary>Exceptions per round on average.</summary>
    public double ExceptionsPerRound => Rounds == 0 ? 0 : (double)Exceptions / Rounds;

    /// <summary>Average time an exception's round took, from its first exception queued to its completion.</summary>
    public TimeSpan AverageRoundWait => Rounds == 0 ? TimeSpan.Zero : WaitTime / Rounds;
}
