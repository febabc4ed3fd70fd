using System.CommandLine;
using Journal.Tools;

namespace SnapCtl.Commands;

/// <summary><c>snapctl read &lt;store&gt; [--snapshot &lt;name&gt;] --offset &lt;n&gt; --length &lt;n&gt; [--output &lt;file&gt;]</c>.</summary>
internal static class ReadCommand
{
    public static Command Create(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder.");
        var snapshot = new Option<string>("--snapshot") { Description = "Read from this snapshot instead of the origin.", HelpName = "name" };
        var offset = CommonOptions.Size("--offset", "Byte offset (a multiple of 512).", required: true);
        var length = CommonOptions.Size("--length", "Bytes to read (a multiple of 512).", required: true);
        var output = new Option<string>("--output") { Description = "Write the bytes to this file (default: standard output).", HelpName = "file" };
        var command = new Command("read", "Read raw bytes from the origin or a snapshot.") { store, snapshot, offset, length, output };
        command.SetAction(r => StoreCommands.ReadAsync(console,
            r.GetValue(store)!, r.GetValue(snapshot), r.GetValue(offset), r.GetValue(length), r.GetValue(output)));
        return command;
    }
}
