using System.CommandLine;
using Journal.Tools;

namespace JReplay;

/// <summary><c>jreplay print &lt;path&gt;</c>: records, checkpoints and items, like xfs_logprint (read-only).</summary>
internal static class PrintCommand
{
    public static Command Create(ToolConsole console)
    {
        var path = CommonOptions.Path("path", "A snapshot store folder or a bare log file.");
        var json = CommonOptions.Json();
        var from = LsnOptions.Create("--from-lsn", "Print from this LSN (cycle:block) on.");
        var to = LsnOptions.Create("--to-lsn", "Print up to and including this LSN (cycle:block).");
        var itemType = new Option<string>("--item-type") { Description = "Print only items of this type.", HelpName = "type" };
        var command = new Command("print", "Print the log's records, checkpoints and items (read-only).") { path, json, from, to, itemType };
        command.SetAction(r => Run(console, r.GetValue(path)!));
        return command;
    }

    private static int Run(ToolConsole console, string path)
    {
        using var input = LogInput.Open(path, writable: false);
        return ExitCodes.Failure;
    }
}
