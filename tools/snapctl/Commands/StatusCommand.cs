using System.CommandLine;
using Journal.Tools;

namespace SnapCtl.Commands;

/// <summary><c>snapctl status &lt;store&gt; [--json]</c>: one dmsetup-style line per snapshot.</summary>
internal static class StatusCommand
{
    public static Command Create(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder.");
        var json = CommonOptions.Json();
        var command = new Command("status", "Show the origin, the log and each snapshot's status (like dmsetup status).") { store, json };
        command.SetAction(r => StoreCommands.StatusAsync(console, r.GetValue(store)!, r.GetValue(json)));
        return command;
    }
}
