using Journal.Recovery;

namespace JReplay;

/// <summary>
/// What recovery finds in a log, without changing anything: head, tail, whether it is clean, and the complete
/// checkpoints a replay would apply, decoded. Corruption surfaces as <see cref="CorruptionException"/>.
/// </summary>
internal sealed record LogAnalysis(RecoveryResult Recovery, IReadOnlyList<CheckpointInfo> Checkpoints)
{
    /// <summary>Runs recovery on <paramref name="input"/> read-only and decodes what it delivers.</summary>
    public static LogAnalysis Run(LogInput input)
    {
        var transactions = new List<RecoveredTransaction>();
        var result = LogRecovery.Recover(input.Region, transactions.Add);
        var checkpoints = transactions.Select(t => JReplay.Checkpoints.Decode(input.LogPath, t, input.SnapshotNames)).ToArray();
        return new LogAnalysis(result, checkpoints);
    }

    /// <summary>Item copies in all checkpoints.</summary>
    public long Items => Checkpoints.Sum(c => (long)c.Items.Count);
}
