using System.CommandLine;
using System.Globalization;
using Journal.Recovery;
using Journal.Tools;

namespace JReplay;

/// <summary>
/// <c>jreplay check &lt;path&gt; [--json]</c>: recovery's validation, read-only. Exit 0 when the log is clean, 1 when
/// it needs replay (the last close was not clean), 2 when it is corrupt (one line naming the file, block, LSN and
/// what is wrong).
/// </summary>
internal static class CheckCommand
{
    public static Command Create(ToolConsole console)
    {
        var path = CommonOptions.Path("path", "A snapshot store folder or a bare log file.");
        var json = CommonOptions.Json();
        var command = new Command("check", "Verify the log (read-only). Exit 0: clean; 1: needs replay; 2: corrupt.") { path, json };
        command.SetAction(r => Run(console, r.GetValue(path)!, r.GetValue(json)));
        return command;
    }

    private static int Run(ToolConsole console, string path, bool json)
    {
        using var input = LogInput.Open(path, writable: false);
        LogAnalysis analysis;
        try
        {
            analysis = LogAnalysis.Run(input);
        }
        catch (CorruptionException e) when (json)
        {
            JsonOutput.Write(console.Out, new { Path = path, Log = input.LogPath, Status = "corrupt", Error = e.Message, e.Block, Lsn = e.Lsn.ToString() });
            throw;
        }
        var r = analysis.Recovery;
        if (json)
        {
            JsonOutput.Write(console.Out, new
            {
                Path = path,
                Log = input.LogPath,
                Status = r.Clean ? "clean" : "needs_replay",
                LogBlocks = r.LogBlocks,
                HeadLsn = r.HeadLsn.ToString(),
                TailLsn = r.TailLsn.ToString(),
                NextLsn = r.NextLsn.ToString(),
                r.Clean,
                Records = r.RecordsScanned,
                Checkpoints = analysis.Checkpoints.Count,
                analysis.Items,
                TornHead = r.TornHeadTruncated,
                r.DiscardedBlocks,
                IncompleteDropped = r.IncompleteTransactionsDropped,
            });
        }
        else
        {
            console.Out.WriteLine(Describe(input.LogPath, analysis));
        }
        return r.Clean ? ExitCodes.Success : ExitCodes.WorkToDo;
    }

    /// <summary>One line: clean, or what a replay would do.</summary>
    public static string Describe(string log, LogAnalysis analysis)
    {
        var r = analysis.Recovery;
        if (r.Clean)
            return string.Create(CultureInfo.InvariantCulture, $"{log}: clean (head {r.HeadLsn}, {r.LogBlocks} blocks)");
        string range = analysis.Checkpoints.Count > 0
            ? string.Create(CultureInfo.InvariantCulture, $" (sequences {analysis.Checkpoints[0].Sequence}..{analysis.Checkpoints[^1].Sequence})")
            : "";
        string torn = r.TornHeadTruncated ? string.Create(CultureInfo.InvariantCulture, $"; torn head: {r.DiscardedBlocks} blocks discarded") : "";
        string dropped = r.IncompleteTransactionsDropped > 0 ? string.Create(CultureInfo.InvariantCulture, $"; {r.IncompleteTransactionsDropped} incomplete transactions dropped") : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"{log}: needs replay: {analysis.Checkpoints.Count} checkpoints{range}, {analysis.Items} item copies in {r.RecordsScanned} records from tail {r.TailLsn} to head {r.HeadLsn}{torn}{dropped}");
    }
}
