using Journal.Tests.Tools;

namespace Journal.Tests.Campaign;

/// <summary>Runs the built tools as real processes, each with a watchdog: a hung tool fails its test.</summary>
public static class Tool
{
    /// <summary>How long one tool run may take before it is killed and the test fails.</summary>
    public static readonly TimeSpan Watchdog = TimeSpan.FromMinutes(2);

    /// <summary>Runs <c>snapctl</c> to the end.</summary>
    public static Task<ToolResult> SnapCtl(params string[] args) => ToolProcess.RunAsync("snapctl", args, Watchdog);

    /// <summary>Runs <c>jreplay</c> to the end.</summary>
    public static Task<ToolResult> JReplay(params string[] args) => ToolProcess.RunAsync("jreplay", args, Watchdog);

    /// <summary>Runs <c>snapctl</c> and fails the test unless it exits 0.</summary>
    public static async Task<ToolResult> SnapCtlOk(params string[] args)
    {
        var r = await SnapCtl(args);
        Assert.True(r.ExitCode == 0, $"snapctl {string.Join(' ', args)}: {r}");
        return r;
    }

    /// <summary>
    /// Writes <paramref name="sectors"/> sectors of stamped write <paramref name="write"/> (<see cref="SectorStamp"/>) at
    /// <paramref name="sector"/> of the origin or of <paramref name="snapshot"/>, through <c>snapctl write --input</c>.
    /// The input file goes in <paramref name="scratch"/>, outside the store.
    /// </summary>
    public static string StampFile(string scratch, uint tag, long write, long sector, int sectors)
    {
        string path = Path.Combine(scratch, $"write-{write}.bin");
        File.WriteAllBytes(path, SectorStamp.Make(tag, write, sector, sectors));
        return path;
    }

    /// <summary>The arguments of <c>snapctl write</c> for a stamped write.</summary>
    public static string[] WriteArgs(string store, string? snapshot, long sector, string input) =>
        snapshot is null
            ? ["write", store, "--offset", (sector * SectorStamp.SectorSize).ToString(System.Globalization.CultureInfo.InvariantCulture), "--input", input]
            : ["write", store, "--snapshot", snapshot, "--offset", (sector * SectorStamp.SectorSize).ToString(System.Globalization.CultureInfo.InvariantCulture), "--input", input];
}
