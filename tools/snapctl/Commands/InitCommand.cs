using System.CommandLine;
using Journal.Tools;

namespace SnapCtl.Commands;

/// <summary><c>snapctl init &lt;store&gt; --origin-size &lt;size&gt; [--chunk-size &lt;size&gt;] [--log-size &lt;size&gt;]</c>.</summary>
internal static class InitCommand
{
    public static Command Create(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder to create (must not exist, or be empty).");
        var originSize = CommonOptions.Size("--origin-size", "Size of the origin image (K, M, G suffixes).", required: true);
        var chunkSize = CommonOptions.Size("--chunk-size", "Copy-on-write chunk size: a power of two from 512 bytes.", defaultValue: 4096);
        var logSize = CommonOptions.Size("--log-size", "Size of the shared metadata log (default: sized for the origin).");
        var command = new Command("init", "Create a snapshot store: an origin image of the given size and an empty log.")
        {
            store, originSize, chunkSize, logSize,
        };
        command.SetAction(r => StoreCommands.InitAsync(console,
            r.GetValue(store)!, r.GetValue(originSize), r.GetValue(chunkSize),
            r.GetResult(logSize) is { Implicit: false } ? r.GetValue(logSize) : null));
        return command;
    }
}
