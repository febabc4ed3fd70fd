using Journal.Tools;

namespace SnapCtl.Demo;

/// <summary>The demo: the main job end to end in a scratch folder.</summary>
internal static class DemoRunner
{
    public static Task<int> RunAsync(ToolConsole console, string? folder, bool json)
    {
        _ = (console, folder, json);
        throw new ToolException(ExitCodes.Failure, "demo: the snapshot store is not available in this build");
    }
}
