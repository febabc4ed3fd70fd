using System.Runtime.CompilerServices;
using Journal;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Metadata;

namespace Snapshot.Commit;

/// <summary>
/// Commits a round's exceptions through the store's metadata journal: each COW file's new entries are appended to its
/// area segments (log items), all of them joined to one transaction, committed, and forced once. A round too big for
/// one transaction (more log space than <see cref="MetadataJournal.MaxTransactionBytes"/>) is committed as several, in
/// order, cut between units (one copy's exceptions stay in one transaction, see <see cref="TransactionPlanner"/>), and
/// forced once at the end. The journal's AIL later writes the segments home into the COW files' areas.
/// </summary>
/// <remarks>
/// <para>Lock order, where locks nest here: the journal's log-space reservation is taken first, holding nothing (the
/// AIL may need to write a segment home to free space, and it only <i>tries</i> segment locks); then the segment
/// locks, one COW file after another (only the pipeline's single pump commits, so no two committers ever hold segment
/// locks, and the AIL never waits for one); then each file's metadata lock, briefly. The locks are released once the
/// transaction has committed (before the force).</para>
/// <para>Not thread-safe: the pipeline calls it for one round at a time.</para>
/// </remarks>
internal sealed class JournalCommitter : IMetadataCommitter
{
    private readonly MetadataJournal _journal;
    private readonly WriteBackKicker _kicker;
    private readonly List<(CommitRound.Group Group, int Start, int Count)> _slices = new();
    private readonly TransactionPlanner _planner = new();
    private readonly List<int> _groupOf = new();
    private int[] _segmentEntries = new int[8];
    private long[] _segmentBytes = new long[8];
    private bool[] _skip = new bool[8];
    private readonly List<AreaSegmentItem> _held = new();
    private long _forces, _transactions;

    public JournalCommitter(MetadataJournal journal, WriteBackKicker kicker, Journal.Storage.BlockDevice log)
    {
        _journal = journal;
        _kicker = kicker;
        FlushCarrier = log;
    }

    public string Name => "journal";

    /// <summary>The log's device: a log force ends with its flush.</summary>
    public Journal.Storage.BlockDevice? FlushCarrier { get; }

    public long DurabilityWaits => Interlocked.Read(ref _forces);

    /// <summary>Transactions committed (more than the rounds when a round was split to fit the log).</summary>
    public long Transactions => Interlocked.Read(ref _transactions);

    public CowMetadata Attach(PersistentExceptionStore store, MetadataArea current) => new SegmentedMetadata(store, current);

    /// <summary>Log bytes reserved for one segment that a transaction may fill entirely.</summary>
    private int SegmentReserveBytes(int segmentEntries) =>
        (int)_journal.EstimateLogBytes(new LogItemSize(1, SegmentLogHeader.Size + segmentEntries * DiskException.Size));

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ulong> CommitAsync(CommitRound round, CancellationToken cancellationToken)
    {
        ulong sequence = 0;
        PrepareRound(round);
        while (_planner.Next(_groupOf, round.UnitEnds, _segmentEntries.AsSpan(0, round.GroupCount),
            _segmentBytes.AsSpan(0, round.GroupCount), _journal.MaxTransactionBytes))
        {
            _slices.Clear();
            var planned = _planner.Slices;
            for (int i = 0; i < planned.Count; i++) _slices.Add((round.Groups[planned[i].Group], planned[i].Start, planned[i].Count));
            sequence = await CommitTransactionAsync((int)_planner.Reserve, cancellationToken).ConfigureAwait(false);
        }
        return sequence;
    }

    /// <summary>The planner's input for <paramref name="round"/>: each exception's group (-1 when its file failed or is invalid) and each group's segment costs.</summary>
    private void PrepareRound(CommitRound round)
    {
        int groups = round.GroupCount;
        if (_segmentEntries.Length < groups)
        {
            _segmentEntries = new int[Math.Max(groups, _segmentEntries.Length * 2)];
            _segmentBytes = new long[_segmentEntries.Length];
            _skip = new bool[_segmentEntries.Length];
        }
        for (int g = 0; g < groups; g++)
        {
            var group = round.Groups[g];
            _skip[g] = group.Error is not null || !group.Store.IsValid;
            _segmentEntries[g] = group.Store.SegmentEntries;
            _segmentBytes[g] = SegmentReserveBytes(_segmentEntries[g]);
        }
        _groupOf.Clear();
        foreach (int g in round.GroupOf) _groupOf.Add(_skip[g] ? -1 : g);
        _planner.Begin(groups);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ulong> CommitTransactionAsync(int reserve, CancellationToken cancellationToken)
    {
        ulong sequence;
        bool kick = false;
        _held.Clear();
        // Log space first, holding nothing (see the lock order above).
        using (var tx = await _journal.BeginTransactionAsync(reserve, cancellationToken).ConfigureAwait(false))
        {
            try
            {
                foreach (var (group, start, count) in _slices)
                    await ((SegmentedMetadata)group.Store.Metadata).AppendAsync(tx, group.Items, start, count, _held).ConfigureAwait(false);
                sequence = await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
                foreach (var seg in _held) kick |= seg.Count - seg.HomeCount >= WriteBackKicker.DirtyThreshold;
            }
            finally
            {
                foreach (var seg in _held) seg.Lock.Release();
                _held.Clear();
            }
        }
        Interlocked.Increment(ref _transactions);
        if (kick) _kicker.Request();
        return sequence;
    }

    public ValueTask WaitDurableAsync(ulong ticket, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _forces);
        return _journal.ForceAsync(ticket, cancellationToken);
    }

    /// <inheritdoc/>
    public override string ToString() => $"JournalCommitter({Transactions} transactions, {DurabilityWaits} forces)";
}
