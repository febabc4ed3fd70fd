using Journal.Tools;

namespace JReplay;

/// <summary>
/// The log a command works on: a store folder's shared log, or a bare log file. Opening validates the path
/// (exit 66 when missing or unreadable) and recognises the format (exit 2 when it is not a journal log).
/// </summary>
internal sealed class LogInput : IDisposable
{
    private LogInput(string path) => Path = path;

    /// <summary>The path as given.</summary>
    public string Path { get; }

    /// <summary>Opens <paramref name="path"/>; read-only unless <paramref name="writable"/>.</summary>
    public static LogInput Open(string path, bool writable)
    {
        _ = writable;
        InputPaths.RequireExisting(path);
        if (Directory.Exists(path)) throw new InputException($"{path}: is a directory but not a snapshot store");
        InputPaths.RequireFile(path);
        throw new ToolException(ExitCodes.Failure, $"{path}: not a journal log");
    }

    /// <inheritdoc/>
    public void Dispose() { }
}
