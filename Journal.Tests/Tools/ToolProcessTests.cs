namespace Journal.Tests.Tools;

/// <summary>The built tools run as real processes (the seam of the multi-process and signal tests).</summary>
public sealed class ToolProcessTests
{
    [Fact]
    public async Task Tools_run_as_processes_and_report_their_exit_codes()
    {
        var version = await ToolProcess.RunAsync("snapctl", ["--version"]);
        Assert.Equal(0, version.ExitCode);
        Assert.StartsWith("snapctl ", version.Stdout);

        using var folder = new TempFolder();
        var missing = await ToolProcess.RunAsync("jreplay", ["check", folder["nothing-here"]]);
        Assert.Equal(66, missing.ExitCode);
        Assert.Contains("nothing-here", missing.Stderr);
    }
}
