using System.CommandLine;
using Journal.Tools;

namespace JReplay;

/// <summary><c>jreplay check &lt;path&gt;</c>: exit 0 when the log is clean, 1 when it needs replay, 2 when corrupt.</summary>
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
        _ = json;
        return ExitCodes.Failure;
    }
}
