using System.CommandLine;
using Journal.Tools;

namespace SnapCtl.Commands;

/// <summary><c>snapctl snapshot create|delete|merge</c>.</summary>
internal static class SnapshotCommand
{
    public static Command Create(ToolConsole console)
    {
        var command = new Command("snapshot", "Create, delete or merge snapshots of the origin.");
        command.Subcommands.Add(CreateCreate(console));
        command.Subcommands.Add(CreateDelete(console));
        command.Subcommands.Add(CreateMerge(console));
        return command;
    }

    private static Command CreateCreate(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder.");
        var name = CommonOptions.Name("name", "The new snapshot's name.");
        var cowSize = CommonOptions.Size("--cow-size", "Size of the snapshot's COW file (default: the origin size plus its metadata).");
        var transient = new Option<bool>("--transient") { Description = "Keep the snapshot in memory only (it does not survive a close)." };
        var preallocate = new Option<bool>("--preallocate")
        {
            Description = "Write the whole COW file with zeros now (uses its full size at once; first writes then never wait for it to grow).",
        };
        var command = new Command("create", "Take a point-in-time snapshot of the origin.") { store, name, cowSize, transient, preallocate };
        command.SetAction(r => StoreCommands.CreateSnapshotAsync(console,
            r.GetValue(store)!, r.GetValue(name)!,
            r.GetResult(cowSize) is { Implicit: false } ? r.GetValue(cowSize) : null,
            r.GetValue(transient), r.GetValue(preallocate)));
        return command;
    }

    private static Command CreateDelete(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder.");
        var name = CommonOptions.Name("name", "The snapshot to delete.");
        var force = ForceOption();
        var command = new Command("delete", "Delete a snapshot and its COW file.") { store, name, force };
        command.SetAction(r => StoreCommands.DeleteSnapshotAsync(console, r.GetValue(store)!, r.GetValue(name)!, r.GetValue(force)));
        return command;
    }

    private static Option<bool> ForceOption() => new("--force")
    {
        Description = "When 'snapctl serve' holds the store and NBD clients have the snapshot open, disconnect them first (without it the command fails).",
    };

    private static Command CreateMerge(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder.");
        var name = CommonOptions.Name("name", "The snapshot to merge into the origin.");
        var force = ForceOption();
        var command = new Command("merge",
            "Copy a persistent snapshot back into the origin, then delete it: the origin becomes what the snapshot showed. " +
            "Crash-safe: an interrupted merge leaves the origin reading as the snapshot; run merge again to finish it.")
        {
            store, name, force,
        };
        command.SetAction(r => StoreCommands.MergeSnapshotAsync(console, r.GetValue(store)!, r.GetValue(name)!, r.GetValue(force)));
        return command;
    }
}
