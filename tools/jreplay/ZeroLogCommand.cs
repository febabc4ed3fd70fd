using System.CommandLine;
using System.Globalization;
using Journal.Tools;
using Snapshot;
using Snapshot.Recovery;

namespace JReplay;

/// <summary>
/// <c>jreplay zero-log &lt;store&gt; [--force]</c>: the escape for a journal that recovery refuses (like
/// <c>xfs_repair -L</c>). Without <c>--force</c> it only says what would be lost (exit 64, nothing changed); with it,
/// <see cref="LogReset.Run"/> discards the journal and marks invalid every snapshot whose exceptions may have been only
/// in it, so the store opens again and no snapshot silently reads wrong data.
/// </summary>
internal static class ZeroLogCommand
{
    public static Command Create(ToolConsole console)
    {
        var path = CommonOptions.Path("store", "A snapshot store folder.");
        var force = new Option<bool>("--force") { Description = "Really discard the journal (without it, only say what would be lost)." };
        var command = new Command("zero-log",
            "Discard a store's journal so the store opens again; snapshots that may have lost exceptions are marked invalid.") { path, force };
        command.SetAction(r => Run(console, r.GetValue(path)!, r.GetValue(force)));
        return command;
    }

    private static int Run(ToolConsole console, string path, bool force)
    {
        CheckFolder(path);
        if (!force)
        {
            var plan = LogReset.Plan(path);
            foreach (var line in plan.WarningLines()) console.Out.WriteLine(line);
            throw new UsageException($"{path}: nothing was changed: zero-log discards the journal; run it again with --force to do so");
        }
        var done = LogReset.Run(path);
        foreach (var line in done.WarningLines()) console.Out.WriteLine(line);
        using (var input = LogInput.Open(path))
        {
            var after = input.Scan();
            if (!after.Clean) throw new ToolException(ExitCodes.Failure, $"{input.LogPath}: not clean after the reset (head {after.Log.HeadLsn})");
        }
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Path.Combine(path, SnapshotStore.JournalFileName)}: journal reset: it starts again at cycle {done.NewCycle} ({done.LogBlocks} blocks); {done.Invalidated.Count} snapshot{(done.Invalidated.Count == 1 ? "" : "s")} marked invalid"));
        return ExitCodes.Success;
    }

    /// <summary>A store folder whose files are all regular files (the journal may be missing: the reset recreates it).</summary>
    private static void CheckFolder(string path)
    {
        InputPaths.RequireDirectory(path, "a snapshot store folder");
        string sb = Path.Combine(path, SnapshotStore.SuperblockFileName);
        if (!File.Exists(sb) && !Directory.Exists(sb))
            throw new InputException($"{path}: is a directory but not a snapshot store (no {SnapshotStore.SuperblockFileName})");
        foreach (var f in new[] { sb, Path.Combine(path, SnapshotStore.JournalFileName), Path.Combine(path, SnapshotStore.OriginFileName) }
                     .Concat(Directory.EnumerateFileSystemEntries(path, "*" + SnapshotStore.CowExtension)))
        {
            if (!File.Exists(f) && !Directory.Exists(f)) continue;
            InputPaths.RequireRegular(f);
        }
    }
}
