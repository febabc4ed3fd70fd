namespace Journal.Tests.Tools;

/// <summary>What one in-process run of a tool produced.</summary>
/// <param name="ExitCode">The exit code.</param>
/// <param name="Stdout">Text written to standard output.</param>
/// <param name="Stderr">Text written to standard error.</param>
/// <param name="Raw">Bytes written to the raw output stream (snapctl read without --output).</param>
public sealed record ToolResult(int ExitCode, string Stdout, string Stderr, byte[] Raw)
{
    /// <summary>The non-empty lines of stderr.</summary>
    public string[] ErrorLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <inheritdoc/>
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>Runs the tools in-process through their <c>Program.Run</c> entry points.</summary>
public static class ToolRunner
{
    /// <summary>The tools under test, by command name.</summary>
    public static readonly string[] Tools = ["snapctl", "jreplay"];

    /// <summary>Runs <paramref name="tool"/> with <paramref name="args"/>.</summary>
    public static ToolResult Run(string tool, params string[] args)
    {
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        using var raw = new MemoryStream();
        int code = tool switch
        {
            "snapctl" => global::SnapCtl.Program.Run(args, stdout, stderr, raw),
            "jreplay" => global::JReplay.Program.Run(args, stdout, stderr),
            _ => throw new ArgumentException($"unknown tool {tool}", nameof(tool)),
        };
        return new ToolResult(code, stdout.ToString(), stderr.ToString(), raw.ToArray());
    }

    /// <summary>Runs snapctl.</summary>
    public static ToolResult SnapCtl(params string[] args) => Run("snapctl", args);

    /// <summary>Runs jreplay.</summary>
    public static ToolResult JReplay(params string[] args) => Run("jreplay", args);
}

/// <summary>A temporary folder deleted (with everything in it) on dispose.</summary>
public sealed class TempFolder : IDisposable
{
    /// <summary>Creates an empty folder under the system temp folder.</summary>
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "journal-tools-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    /// <summary>The folder.</summary>
    public string Path { get; }

    /// <summary>A path inside the folder.</summary>
    public string this[string name] => System.IO.Path.Combine(Path, name);

    /// <inheritdoc/>
    public void Dispose()
    {
        try
        {
            foreach (var f in Directory.EnumerateFiles(Path, "*", SearchOption.AllDirectories))
                File.SetAttributes(f, FileAttributes.Normal);
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
