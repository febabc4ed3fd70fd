using Journal.Tests.Tools;

namespace Journal.Tests.Campaign;

/// <summary>
/// Issue 9 item 7 (first point): on a read-only file system the tools must say "read-only file system", never "store
/// is in use" (which invites the user to delete lock files), and <c>status</c> and <c>read</c> should work read-only. A
/// store on a loop-mounted ext4 (<see cref="LoopMountedFileSystem"/>) remounted read-only.
/// </summary>
public sealed class ReadOnlyFileSystemTests
{
    private const uint Tag = 0x0520;
    private const int Sectors = 2048; // 1 MiB origin

    [Fact]
    public async Task On_a_read_only_file_system_no_tool_says_the_store_is_in_use()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync();
        using var scratch = new TempFolder();
        string store = await MakeReadOnlyStoreAsync(fs, scratch);

        var problems = new List<string>();
        var runs = new (string What, string[] Args, bool MayWork)[]
        {
            ("status", ["status", store], true),
            ("read", ["read", store, "--offset", "0", "--length", "1M", "--output", scratch["origin.bin"]], true),
            ("write", Tool.WriteArgs(store, null, 0, Tool.StampFile(scratch.Path, Tag, 2, 0, 8)), false),
            ("snapshot create", ["snapshot", "create", store, "s2"], false),
        };
        foreach (var (what, args, mayWork) in runs)
        {
            var r = await Tool.SnapCtl(args);
            if (r.Stderr.Contains("in use", StringComparison.OrdinalIgnoreCase))
                problems.Add($"{what}: says the store is in use on a read-only file system: {r}");
            else if (r.ExitCode == 0 && !mayWork)
                problems.Add($"{what}: exit 0 on a read-only file system: {r}");
            else if (r.ExitCode != 0 && (r.ExitCode != 2 || !r.Stderr.Contains("read-only file system", StringComparison.OrdinalIgnoreCase)))
                problems.Add($"{what}: expected exit 2 and 'read-only file system': {r}");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public async Task Status_and_read_work_on_a_read_only_file_system()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync();
        using var scratch = new TempFolder();
        string store = await MakeReadOnlyStoreAsync(fs, scratch);

        var status = await Tool.SnapCtl("status", store);
        Assert.True(status.ExitCode == 0, $"status on a read-only file system: {status}");
        Assert.Matches(@"^origin: 0 2048 snapshot-origin\ns1: 0 2048 snapshot \d+/\d+ \d+\n$", status.Stdout);
        foreach (var (volume, expected) in new[] { ("origin", 2L), ("s1", 1L) })
        {
            string output = scratch[$"{volume}.bin"];
            string[] args = volume == "origin"
                ? ["read", store, "--offset", "0", "--length", "1M", "--output", output]
                : ["read", store, "--snapshot", volume, "--offset", "0", "--length", "1M", "--output", output];
            var r = await Tool.SnapCtl(args);
            Assert.True(r.ExitCode == 0, $"read of {volume} on a read-only file system: {r}");
            var model = new VolumeModel(Sectors, expected);
            var (wrong, first) = model.Check(File.ReadAllBytes(output), Tag, 3);
            Assert.True(wrong == 0, $"{volume}: {wrong} sectors wrong, e.g. " + string.Join("; ", first.Select(f => $"{f.Sectors}: {f.Description}")));
        }
    }

    /// <summary>A store (write 1 everywhere, snapshot s1, then write 2 everywhere) on <paramref name="fs"/>, remounted read-only.</summary>
    private static async Task<string> MakeReadOnlyStoreAsync(LoopMountedFileSystem fs, TempFolder scratch)
    {
        string store = Path.Combine(fs.MountPoint, "store");
        await Tool.SnapCtlOk("init", store, "--origin-size", "1M");
        await Tool.SnapCtlOk(Tool.WriteArgs(store, null, 0, Tool.StampFile(scratch.Path, Tag, 1, 0, Sectors)));
        await Tool.SnapCtlOk("snapshot", "create", store, "s1");
        await Tool.SnapCtlOk(Tool.WriteArgs(store, null, 0, Tool.StampFile(scratch.Path, Tag, 2, 0, Sectors)));
        fs.RemountReadOnly();
        return store;
    }
}
