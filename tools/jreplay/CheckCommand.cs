using Snapshot;
using System.CommandLine;
using Journal.Recovery;
using Journal.Tools;
using Snapshot.Recovery;

namespace JReplay;

/// <summary>
/// <c>jreplay check &lt;path&gt; [--json]</c>: recovery's validation, read-only. Exit 0 when the log is clean, 1 when
/// it needs replay (the last close was not clean), 2 when it is corrupt (one line naming the file, block, LSN and
/// what is wrong). For a store folder it runs exactly what <c>replay</c> runs (<see cref="StoreRecovery.CheckAsync(string, CancellationToken)"/>:
/// the store's whole open, with every write kept in memory), so it refuses exactly what <c>replay</c> refuses, with the
/// same line; for a bare log it scans the log and decodes every checkpoint (and every store item) through the same
/// readers.
/// </summary>
internal static class CheckCommand
{
    public static Command Create(ToolConsole console)
    {
        var path = CommonOptions.Path("path", "A snapshot store folder or a bare log file.");
        var json = CommonOptions.Json();
        var command = new Command("check", "Verify the log (read-only). Exit 0: clean; 1: needs replay; 2: corrupt.") { path, json };
        command.SetAction((r, ct) => RunAsync(console, r.GetValue(path)!, r.GetValue(json), ct));
        return command;
    }

    private static async Task<int> RunAsync(ToolConsole console, string path, bool json, CancellationToken ct)
    {
        string logPath = LogInput.CheckPath(path, out bool isStore);
        LogState state;
        try
        {
            state = await ReadStateAsync(path, logPath, isStore, ct).ConfigureAwait(false);
        }
        catch (CorruptionException e) when (json)
        {
            JsonOutput.Write(console.Out, new { Path = path, Log = logPath, Status = "corrupt", Error = e.Message, e.Block, Lsn = e.Lsn.ToString() });
            throw;
        }
        if (json)
        {
            JsonOutput.Write(console.Out, new
            {
                Path = path,
                Log = state.LogPath,
                Status = state.Clean ? "clean" : "needs_replay",
                state.LogBlocks,
                HeadLsn = state.HeadLsn.ToString(),
                TailLsn = state.TailLsn.ToString(),
                NextLsn = state.NextLsn.ToString(),
                state.Clean,
                state.Records,
                state.Checkpoints,
                state.Items,
                state.TornHead,
                state.DiscardedBlocks,
                state.IncompleteDropped,
            });
        }
        else
        {
            console.Out.WriteLine(state.Describe());
        }
        return state.Clean ? ExitCodes.Success : ExitCodes.WorkToDo;
    }

    /// <summary>
    /// What a replay would find, changing nothing: for a store folder the store's own recovery on a read-only overlay,
    /// for a bare log a scan and the store's item decoders. The log is named <paramref name="logPath"/> (as given).
    /// </summary>
    public static async Task<LogState> ReadStateAsync(string path, string logPath, bool isStore, CancellationToken ct,
        CowUnreadablePolicy cowUnreadable = CowUnreadablePolicy.KeepSnapshot)
    {
        if (isStore) return LogState.From(await StoreRecovery.CheckAsync(path, cowUnreadable, ct).ConfigureAwait(false)) with { LogPath = logPath };
        using var input = LogInput.Open(path);
        return LogState.From(input.Scan()) with { LogPath = logPath };
    }
}
