using System.Globalization;
using System.Text.Json.Serialization;
using Journal.Tools;

namespace SnapCtl.Demo;

/// <summary>What the demo did and found; printed as a short summary or, with <c>--json</c>, as one object.</summary>
internal sealed class DemoReport(
    string folder, bool folderRemoved, int seed, bool ok, IReadOnlyList<DemoReport.Phase> phases, DemoReport.Figures figures,
    IReadOnlyList<string> problems, bool crashOnly)
{
    /// <summary>One step of the demo and how long it took.</summary>
    public sealed record Phase(string Name, [property: JsonIgnore] TimeSpan Elapsed, string Detail)
    {
        public double Milliseconds => Math.Round(Elapsed.TotalMilliseconds, 1);
    }

    /// <summary>The numbers of a run.</summary>
    public sealed class Figures
    {
        public long OriginWrites { get; set; }
        public long SnapshotWrites { get; set; }
        public string WritableSnapshot { get; set; } = "";
        public long BytesWritten { get; set; }
        public int PersistentSnapshots { get; set; }
        public long ExceptionsBeforeCrash { get; set; }
        public long Checkpoints { get; set; }
        public long CheckpointBytes { get; set; }
        public long LogBytesWritten { get; set; }
        public uint LogBlocks { get; set; }
        public int LogWraps { get; set; }
        public long WritesNotDurable { get; set; }
        public int UnflushedDeviceWrites { get; set; }
        public int UnflushedKept { get; set; }
        public int UnflushedLost { get; set; }
        public int UnflushedTorn { get; set; }
        public bool LogCleanAtCrash { get; set; }
        public int RecordsScanned { get; set; }
        public string LogTail { get; set; } = "";
        public string LogHead { get; set; } = "";
        public bool TornHead { get; set; }
        public long DiscardedBlocks { get; set; }
        public long ReplayedCheckpoints { get; set; }
        public long ReplayedItemsApplied { get; set; }
        public long ReplayedItemsSkipped { get; set; }
        public long ExceptionsAfterRecovery { get; set; }
        public long SectorsVerified { get; set; }
        public long SectorsUncertain { get; set; }
        public long Mismatches { get; set; }
    }

    public string Folder => folder;
    public bool FolderRemoved => folderRemoved;
    public int Seed => seed;
    public bool Ok => ok;
    public bool CrashOnly => crashOnly;
    public IReadOnlyList<Phase> Phases => phases;
    public Figures Results => figures;
    public IReadOnlyList<string> Problems => problems;
    public double TotalSeconds => Math.Round(phases.Sum(p => p.Elapsed.TotalSeconds), 2);

    /// <summary>The human summary.</summary>
    public void WriteText(TextWriter w)
    {
        var f = figures;
        string I(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
        w.WriteLine($"snapctl demo: store in {folder}{(folderRemoved ? " (removed afterwards)" : "")}, seed {seed.ToString(CultureInfo.InvariantCulture)}");
        int width = phases.Max(p => p.Name.Length);
        foreach (var p in phases)
            w.WriteLine(I($"  {p.Name.PadRight(width)}  {p.Elapsed.TotalMilliseconds,7:N0} ms  {p.Detail}"));
        if (crashOnly)
        {
            w.WriteLine(I($"stopped after the crash: the store in {folder} was not closed cleanly; its log has {f.RecordsScanned:N0} records to replay."));
            w.WriteLine($"  try: jreplay check {folder}; jreplay print {folder}; jreplay replay {folder}; snapctl status {folder}");
            return;
        }
        w.WriteLine(ok
            ? I($"result: OK, every sector of the origin and of {f.PersistentSnapshots} snapshots as expected after the crash")
            : I($"result: FAILED, {f.Mismatches:N0} sectors wrong, {problems.Count:N0} problems:"));
        foreach (var p in problems.Take(10)) w.WriteLine($"  MISMATCH {p}");
        w.WriteLine(I($"  writes      {f.OriginWrites + f.SnapshotWrites:N0} ({Sizes.Human(f.BytesWritten)}): {f.OriginWrites:N0} to the origin, {f.SnapshotWrites:N0} to {f.WritableSnapshot}"));
        w.WriteLine(I($"  exceptions  {f.ExceptionsBeforeCrash:N0} COW exceptions in the persistent snapshots at the crash, {f.ExceptionsAfterRecovery:N0} after recovery (those whose commit was in flight may go either way)"));
        w.WriteLine(I($"  journal     {f.Checkpoints:N0} checkpoints ({Sizes.Human(f.CheckpointBytes)}), {Sizes.Human(f.LogBytesWritten)} written to the {Sizes.Format((long)f.LogBlocks * 512)} log (wrapped {f.LogWraps:N0} times)"));
        w.WriteLine(I($"  recovery    {f.RecordsScanned:N0} log records replayed: {f.ReplayedCheckpoints:N0} checkpoints, {f.ReplayedItemsApplied:N0} item copies applied, {f.ReplayedItemsSkipped:N0} already home; torn head: {(f.TornHead ? $"yes, {f.DiscardedBlocks} blocks discarded" : "no")}"));
        w.WriteLine(I($"  time        {phases.Sum(p => p.Elapsed.TotalSeconds):0.0} s"));
    }
}
