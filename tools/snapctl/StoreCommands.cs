using Journal.Tools;

namespace SnapCtl;

/// <summary>The bodies of the store commands: open the store, do one thing, close it cleanly.</summary>
internal static class StoreCommands
{
    public static Task<int> InitAsync(ToolConsole console, string store, long originSize, long chunkSize, long? logSize)
    {
        _ = (console, store, originSize, chunkSize, logSize);
        throw new ToolException(ExitCodes.Failure, $"{store}: the snapshot store is not available in this build");
    }

    public static Task<int> CreateSnapshotAsync(ToolConsole console, string store, string name, long? cowSize, bool transient)
    {
        _ = (console, name, cowSize, transient);
        RequireStore(store);
        throw new ToolException(ExitCodes.Failure, $"{store}: the snapshot store is not available in this build");
    }

    public static Task<int> DeleteSnapshotAsync(ToolConsole console, string store, string name)
    {
        _ = (console, name);
        RequireStore(store);
        throw new ToolException(ExitCodes.Failure, $"{store}: the snapshot store is not available in this build");
    }

    public static Task<int> WriteAsync(ToolConsole console, string store, string? snapshot, long offset, int? pattern, long length, string? input)
    {
        _ = (console, snapshot, offset, pattern, length);
        RequireStore(store);
        if (input is not null) InputPaths.RequireFile(input);
        throw new ToolException(ExitCodes.Failure, $"{store}: the snapshot store is not available in this build");
    }

    public static Task<int> ReadAsync(ToolConsole console, string store, string? snapshot, long offset, long length, string? output)
    {
        _ = (console, snapshot, offset, length, output);
        RequireStore(store);
        throw new ToolException(ExitCodes.Failure, $"{store}: the snapshot store is not available in this build");
    }

    public static Task<int> StatusAsync(ToolConsole console, string store, bool json)
    {
        _ = (console, json);
        RequireStore(store);
        throw new ToolException(ExitCodes.Failure, $"{store}: the snapshot store is not available in this build");
    }

    /// <summary>The store folder must exist and be a folder.</summary>
    public static void RequireStore(string store)
    {
        InputPaths.RequireDirectory(store, "a snapshot store folder");
        if (!File.Exists(Path.Combine(store, "store.sb"))) throw new InputException($"{store}: not a snapshot store (no store.sb)");
    }
}
