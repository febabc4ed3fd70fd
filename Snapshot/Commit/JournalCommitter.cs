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
/// order, and forced once at the end. The journal's AIL later writes the segments home into the COW files' areas.
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
    private readonly List<AreaSegmentItem> _held = new();
    private long _forces, _transactions;

    public JournalCommitter(MetadataJournal journal, WriteBackKicker kicker)
    {
        _journal = journal;
        _kicker = kicker;
    }

    public string Name => "journal";

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
        int g = 0, next = 0;
        while (true)
        {
            // One transaction: as many file slices as fit the per-transaction limit. A slice of n entries touches at
            // most 1 + ceil(n / segment entries) segments (the partly filled one it starts in, then whole ones).
            _slices.Clear();
            long reserve = 0;
            while (g < round.GroupCount)
            {
                var group = round.Groups[g];
                if (group.Error is not null || !group.Store.IsValid || group.Items.Count == 0) { g++; next = 0; continue; }
                int perSegment = group.Store.SegmentEntries;
                int segmentBytes = SegmentReserveBytes(perSegment);
                long room = (_journal.MaxTransactionBytes - reserve) / segmentBytes - 1; // whole segments still allowed
                if (room < 1)
                {
                    if (_slices.Count > 0) break;
                    room = 1; // a log this small still commits one segment at a time
                }
                int take = (int)Math.Min(group.Items.Count - next, room * perSegment);
                _slices.Add((group, next, take));
                reserve += (1 + (take + perSegment - 1) / perSegment) * (long)segmentBytes;
                next += take;
                if (next == group.Items.Count) { g++; next = 0; }
            }
            if (_slices.Count == 0) break;
            sequence = await CommitTransactionAsync((int)reserve, cancellationToken).ConfigureAwait(false);
        }
        return sequence;
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
