using System.CommandLine;
using Journal.Tools;

namespace JReplay;

/// <summary><c>jreplay replay &lt;path&gt; [--dry-run]</c>: recover in place.</summary>
internal static class ReplayCommand
{
    public static Command Create(ToolConsole console)
    {
        var path = CommonOptions.Path("path", "A snapshot store folder or a bare log file.");
        var dryRun = new Option<bool>("--dry-run") { Description = "Say what would be replayed; change nothing." };
        var json = CommonOptions.Json();
        var command = new Command("replay", "Recover in place: replay every complete checkpoint not yet in its home location.") { path, dryRun, json };
        command.SetAction(r => Run(console, r.GetValue(path)!, r.GetValue(dryRun)));
        return command;
    }

    private static int Run(ToolConsole console, string path, bool dryRun)
    {
        using var input = LogInput.Open(path, writable: !dryRun);
        return ExitCodes.Failure;
    }
}
