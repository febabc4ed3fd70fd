using Snapshot.Exceptions;

namespace Snapshot.Commit;

/// <summary>
/// One round of the commit pipeline: the pending exceptions queued since the previous round, grouped by COW file
/// (<see cref="Groups"/>, in the order each file first appears; inside a group, queue order). Rounds are pooled by the
/// pipeline and reused, lists and all, so a steady stream of rounds allocates nothing.
/// </summary>
internal sealed class CommitRound
{
    /// <summary>The exceptions of one COW file in this round.</summary>
    internal sealed class Group
    {
        public PersistentExceptionStore Store = null!;
        public readonly List<PendingException> Items = new();

        /// <summary>Set when the file's flush or metadata commit failed: its items are not committed.</summary>
        public Exception? Error;
    }

    private readonly List<Group> _groups = new();
    private int _groupCount;

    /// <summary>Every exception of the round, in queue order.</summary>
    public readonly List<PendingException> Items = new();

    /// <summary>
    /// The end (exclusive, in <see cref="Items"/>) of each unit: the exceptions one copy queued together, which a
    /// crash must find all committed or none (see <see cref="TransactionPlanner"/>).
    /// </summary>
    public readonly List<int> UnitEnds = new();

    /// <summary>The index in <see cref="Groups"/> of each exception of <see cref="Items"/> (after <see cref="GroupByFile"/>).</summary>
    public readonly List<int> GroupOf = new();

    /// <summary>
    /// While the round is gathered: the requests cut into runs that queued copies into it (each once). Before it is
    /// taken, the round waits for their runs announced so far (<see cref="CommitPipeline.Expect"/>).
    /// </summary>
    public readonly List<RequestPlug> Plugs = new();

    /// <summary>Round number (1, 2, ...).</summary>
    public long Number;

    /// <summary>When the first exception of the round was queued (Stopwatch ticks).</summary>
    public long FirstQueuedTicks;

    /// <summary>The groups in use, <see cref="GroupCount"/> of them.</summary>
    public IReadOnlyList<Group> Groups => _groups;

    /// <summary>Groups in use.</summary>
    public int GroupCount => _groupCount;

    /// <summary>Exceptions whose group has no error (what the committer commits).</summary>
    public int CommittableCount
    {
        get
        {
            int n = 0;
            for (int g = 0; g < _groupCount; g++) if (_groups[g].Error is null) n += _groups[g].Items.Count;
            return n;
        }
    }

    /// <summary>Sorts <see cref="Items"/> into groups by COW file (a linear scan: a store has at most 64 snapshots).</summary>
    public void GroupByFile()
    {
        foreach (var pe in Items)
        {
            var store = (PersistentExceptionStore)pe.Snapshot!.Store!;
            int index = -1;
            for (int i = 0; i < _groupCount; i++)
                if (ReferenceEquals(_groups[i].Store, store)) { index = i; break; }
            if (index < 0)
            {
                if (_groupCount == _groups.Count) _groups.Add(new Group());
                index = _groupCount++;
                _groups[index].Store = store;
            }
            _groups[index].Items.Add(pe);
            GroupOf.Add(index);
        }
    }

    /// <summary>Empties the round for reuse.</summary>
    public void Reset()
    {
        Items.Clear();
        UnitEnds.Clear();
        GroupOf.Clear();
        Plugs.Clear();
        for (int i = 0; i < _groupCount; i++)
        {
            _groups[i].Items.Clear();
            _groups[i].Store = null!;
            _groups[i].Error = null;
        }
        _groupCount = 0;
        Number = 0;
        FirstQueuedTicks = 0;
    }

    /// <inheritdoc/>
    public override string ToString() => $"CommitRound({Number}: {Items.Count} exceptions in {_groupCount} COW files)";
}
