using System.CommandLine;
using System.Globalization;
using Journal.Tools;
using Snapshot;
using Snapshot.Recovery;

namespace JReplay;

/// <summary>
/// <c>jreplay replay &lt;path&gt; [--dry-run] [--json]</c>: recovers a store in place. The store is opened
/// (<see cref="StoreRecovery.ReplayAsync(string, CancellationToken)"/>: the store's own recovery, which replays every
/// complete checkpoint of its journal, skipping item copies the home location already reflects, and loads every
/// snapshot) and closed cleanly (everything written home, the log marked clean), so running it again finds a clean log
/// and replays nothing. <c>--dry-run</c> runs the same with every write kept in memory (what <c>check</c> runs) and
/// says what would be replayed. A bare log file can be dry-run, not replayed: the items' home locations are in its store.
/// </summary>
internal static class ReplayCommand
{
    public static Command Create(ToolConsole console)
    {
        var path = CommonOptions.Path("path", "A snapshot store folder (or, with --dry-run, a bare log file).");
        var dryRun = new Option<bool>("--dry-run") { Description = "Say what would be replayed; change nothing." };
        var json = CommonOptions.Json();
        var invalidate = new Option<bool>("--invalidate-unreadable")
        {
            Description = "Invalidate for good any snapshot whose COW file is missing or unreadable, so the replay can finish " +
                "(without it such a replay is refused and nothing is changed, so the file can be restored first).",
        };
        var command = new Command("replay", "Recover in place: replay every complete checkpoint, then mark the log clean.") { path, dryRun, invalidate, json };
        command.SetAction((r, ct) => RunAsync(console, r.GetValue(path)!, r.GetValue(dryRun), r.GetValue(json),
            r.GetValue(invalidate) ? CowUnreadablePolicy.InvalidateSnapshot : CowUnreadablePolicy.KeepSnapshot, ct));
        return command;
    }

    private static async Task<int> RunAsync(ToolConsole console, string path, bool dryRun, bool json, CowUnreadablePolicy cowUnreadable, CancellationToken ct)
    {
        string logPath = LogInput.CheckPath(path, out bool isStore);
        if (dryRun || !isStore)
        {
            var state = await CheckCommand.ReadStateAsync(path, logPath, isStore, ct, cowUnreadable).ConfigureAwait(false);
            if (!dryRun && !state.Clean)
                throw new UsageException($"{path}: a bare log file can be checked, printed and dry-run; replay needs its store folder, where the items' home locations are");
            string what = state.Clean
                ? $"{state.LogPath}: clean: nothing to replay"
                : state.Describe() + "; dry run: nothing was changed";
            Report(console, json, path, dryRun, replayed: false, state, what);
            return ExitCodes.Success;
        }

        var report = await ProgressBar.SpinAsync(console, $"replaying {logPath}", () => StoreRecovery.ReplayAsync(path, cowUnreadable, ct)).ConfigureAwait(false);
        var before = LogState.From(report) with { LogPath = logPath };
        using (var input = LogInput.Open(path))
        {
            var after = LogState.From(input.Scan());
            if (!after.Clean)
                throw new ToolException(ExitCodes.Failure, $"{logPath}: still not clean after replay (head {after.HeadLsn})");
        }
        string text;
        if (report.Clean)
        {
            text = $"{logPath}: clean: nothing to replay";
        }
        else
        {
            string homeless = report.ItemsWithoutHome > 0
                ? string.Create(CultureInfo.InvariantCulture, $", {report.ItemsWithoutHome} skipped (their snapshot is deleted, invalid or transient, or its COW file is gone)")
                : "";
            text = string.Create(CultureInfo.InvariantCulture,
                $"{logPath}: replayed {report.Checkpoints} checkpoints from tail {report.TailLsn} to head {report.HeadLsn}: {report.ItemsApplied} item copies applied, {report.ItemsSkipped} already home{homeless}; the store was closed cleanly");
        }
        Report(console, json, path, dryRun, replayed: !report.Clean, before, text, report);
        return ExitCodes.Success;
    }

    private static void Report(ToolConsole console, bool json, string path, bool dryRun, bool replayed, LogState s, string text,
        StoreRecoveryReport? report = null)
    {
        if (!json)
        {
            console.Out.WriteLine(text);
            return;
        }
        JsonOutput.Write(console.Out, new
        {
            Path = path,
            Log = s.LogPath,
            DryRun = dryRun,
            WasClean = s.Clean,
            Replayed = replayed,
            Checkpoints = s.Clean ? 0 : s.Checkpoints,
            Items = s.Clean ? 0 : s.Items,
            ItemsApplied = report?.ItemsApplied,
            ItemsSkipped = report?.ItemsSkipped,
            ItemsWithoutHome = report?.ItemsWithoutHome,
            TailLsn = s.TailLsn.ToString(),
            HeadLsn = s.HeadLsn.ToString(),
            Message = text,
        });
    }
}
