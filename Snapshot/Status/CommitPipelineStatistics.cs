namespace Snapshot;

/// <summary>What the commit pipeline has done since the store was opened.</summary>
/// <param name="Committer">"journal" or "direct-area".</param>
/// <param name="Rounds">Rounds completed.</param>
/// <param name="Exceptions">Exceptions those rounds took.</param>
/// <param name="CowFlushes">COW file flushes (fdatasync) issued by rounds: one per file with copies per round, except
/// files whose copies were made durable by another file's flush (<paramref name="CowWriteBacks"/>).</param>
/// <param name="Transactions">Journal transactions (more than the rounds when a round was split to fit the log), or area commits.</param>
/// <param name="DurabilityWaits">Log forces (journal) or durable area writes (direct) issued.</param>
/// <param name="LargestRound">Most exceptions in one round.</param>
/// <param name="WaitTime">Total time from the first exception queued in a round to the round's completion.</param>
/// <param name="FailedRounds">Rounds whose commit or durability wait failed.</param>
/// <param name="CowWriteBacks">COW files whose copies in a round were written back to the device and made durable by
/// the flush of another COW file on the same file system (one device flush for the round's files), instead of their
/// own flush.</param>
/// <param name="FlushTime">Total time rounds spent making their COW data durable (step 1; one round at a time). For a
/// round that rode the previous round's log force, its write-backs and the wait for that force.</param>
/// <param name="CommitTime">Total time rounds spent committing their exceptions, up to handing the force on (step 2; one
/// round at a time, after its step 1).</param>
/// <param name="CarriedRounds">Rounds whose COW data was made durable by the previous round's log force: written back
/// to the device before that force began, so its one device flush covered both (no COW flush of their own; their files
/// are counted in <paramref name="CowWriteBacks"/>).</param>
/// <param name="RunWaits">Rounds that first waited for the other runs of origin writes they held copies of (a request
/// cut into runs copied in parallel announces them), so that one round took all their copies.</param>
public sealed record CommitPipelineStatistics(string Committer, long Rounds, long Exceptions, long CowFlushes, long Transactions, long DurabilityWaits,
    long LargestRound, TimeSpan WaitTime, long FailedRounds, long CowWriteBacks, TimeSpan FlushTime, TimeSpan CommitTime, long CarriedRounds,
    long RunWaits)
{
    /// <summary>Exceptions per round on average.</summary>
    public double ExceptionsPerRound => Rounds == 0 ? 0 : (double)Exceptions / Rounds;

    /// <summary>Average time an exception's round took, from its first exception queued to its completion.</summary>
    public TimeSpan AverageRoundWait => Rounds == 0 ? TimeSpan.Zero : WaitTime / Rounds;
}
