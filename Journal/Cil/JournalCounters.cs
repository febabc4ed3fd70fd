namespace Journal.Cil;

/// <summary>The journal's counters, updated with interlocked operations from every path.</summary>
internal sealed class JournalCounters
{
    public long Commits, ItemsCommitted, Relogs, Pushes, Checkpoints, CheckpointBytes, Forces;
    public long AilWriteBacks, AilFlushes, TailMoves, HardLimitWaits, SpaceWaits, MemoryWaits, ReservationOverruns;
    public long Gathers, GatherTimeouts;
}
