using System.CommandLine;
using System.Globalization;
using Journal.Tools;
using Snapshot;

namespace JReplay;

/// <summary>
/// <c>jreplay replay &lt;path&gt; [--dry-run] [--json]</c>: recovers a store in place. The store is opened (which
/// replays every complete checkpoint of its journal into the COW metadata areas, skipping item copies the home
/// location already reflects) and closed cleanly (everything written home, the log marked clean), so running it
/// again finds a clean log and replays nothing. <c>--dry-run</c> opens the log read-only and says what would be
/// replayed. A bare log file can be dry-run, not replayed: the items' home locations are in its store.
/// </summary>
internal static class ReplayCommand
{
    public static Command Create(ToolConsole console)
    {
        var path = CommonOptions.Path("path", "A snapshot store folder (or, with --dry-run, a bare log file).");
        var dryRun = new Option<bool>("--dry-run") { Description = "Say what would be replayed; change nothing." };
        var json = CommonOptions.Json();
        var command = new Command("replay", "Recover in place: replay every complete checkpoint, then mark the log clean.") { path, dryRun, json };
        command.SetAction(r => RunAsync(console, r.GetValue(path)!, r.GetValue(dryRun), r.GetValue(json)));
        return command;
    }

    private static async Task<int> RunAsync(ToolConsole console, string path, bool dryRun, bool json)
    {
        LogAnalysis before;
        string logPath;
        bool isStore;
        using (var input = LogInput.Open(path, writable: false))
        {
            before = LogAnalysis.Run(input);
            logPath = input.LogPath;
            isStore = input.IsStore;
        }
        var r = before.Recovery;
        if (dryRun || r.Clean)
        {
            string what = r.Clean
                ? $"{logPath}: clean: nothing to replay"
                : CheckCommand.Describe(logPath, before) + "; dry run: nothing was changed";
            Report(console, json, path, logPath, dryRun, replayed: false, before, what);
            return ExitCodes.Success;
        }
        if (!isStore)
            throw new UsageException($"{path}: a bare log file can be checked, printed and dry-run; replay needs its store folder, where the items' home locations are");

        var replayed = await ProgressBar.SpinAsync(console, $"replaying {logPath}", () => StoreReplay.RunAsync(path)).ConfigureAwait(false);

        using (var input = LogInput.Open(path, writable: false))
        {
            var after = LogAnalysis.Run(input);
            if (!after.Recovery.Clean)
                throw new ToolException(ExitCodes.Failure, $"{logPath}: still not clean after replay (head {after.Recovery.HeadLsn})");
        }
        string done = string.Create(CultureInfo.InvariantCulture,
            $"{logPath}: replayed {replayed.Checkpoints} checkpoints from tail {r.TailLsn} to head {r.HeadLsn}: {replayed.Applied} item copies applied, {replayed.Skipped} already home; the store was closed cleanly");
        Report(console, json, path, logPath, dryRun, replayed: true, before, done, replayed);
        return ExitCodes.Success;
    }

    private static void Report(ToolConsole console, bool json, string path, string log, bool dryRun, bool replayed, LogAnalysis a, string text,
        StoreReplay.Counts? counts = null)
    {
        if (!json)
        {
            console.Out.WriteLine(text);
            return;
        }
        JsonOutput.Write(console.Out, new
        {
            Path = path,
            Log = log,
            DryRun = dryRun,
            WasClean = a.Recovery.Clean,
            Replayed = replayed,
            Checkpoints = a.Recovery.Clean ? 0 : a.Checkpoints.Count,
            Items = a.Recovery.Clean ? 0 : a.Items,
            ItemsApplied = counts?.Applied,
            ItemsSkipped = counts?.Skipped,
            TailLsn = a.Recovery.TailLsn.ToString(),
            HeadLsn = a.Recovery.HeadLsn.ToString(),
            Message = text,
        });
    }
}

/// <summary>Replays a store's journal in place: opening the store replays it, closing it cleanly marks the log clean.</summary>
internal static class StoreReplay
{
    /// <summary>What the store's recovery did: checkpoints replayed, item copies applied and skipped (already home).</summary>
    public sealed record Counts(long Checkpoints, long Applied, long Skipped);

    public static async Task<Counts> RunAsync(string folder)
    {
        var store = await SnapshotStore.OpenAsync(folder).ConfigureAwait(false);
        try
        {
            var j = store.Journal;
            return new Counts(j?.RecoveredCheckpoints ?? 0, j?.RecoveredItemsApplied ?? 0, j?.RecoveredItemsSkipped ?? 0);
        }
        finally
        {
            await store.CloseAsync().ConfigureAwait(false);
        }
    }
}
