using System.Text.Json;
using Journal.Tests.Tools;

namespace Journal.Tests.Campaign;

/// <summary>
/// Issue 9 item 5: a full disk must never cost a snapshot or an acknowledged write, and nothing that failed may say
/// "durable". A store on a real 64 MiB ext4 file system (<see cref="LoopMountedFileSystem"/>), filled up with a filler
/// file; the tools run as real processes.
/// </summary>
/// <remarks>
/// <para>The store: origin 8M, chunk 4K. Write 1 fills the origin; s1 is taken; write 2 changes origin [0, 1M) (copied
/// into s1); s2 is taken; write 3 goes to s2 at [1M, 1.5M). So s1 holds write 1 everywhere, s2 holds write 2 in
/// [0, 1M), write 3 in [1M, 1.5M) and write 1 elsewhere.</para>
/// <para>"Space runs out all the same": once the store reserves each COW file's configured size at create
/// (docs/snapshot.md, "Space and trust"), a plain origin write on a full disk needs no new space and succeeds. To make
/// writes that truly need space on every design, the strict tests first punch holes where the COW files hold zeros
/// (<c>fallocate --dig-holes</c>, as a sparse copy of a store folder would leave them) and then fill the disk. The test
/// of the issue's own scenario (no holes) accepts either outcome the design allows: success, or "no space left".</para>
/// </remarks>
public sealed class FullDiskTests
{
    private const uint Tag = 0xD15C;
    private const int Mi = 2048; // sectors per MiB

    [Fact]
    public async Task An_origin_write_needing_copy_on_write_space_on_a_full_disk_fails_with_no_space_and_keeps_every_snapshot()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync();
        using var scratch = new TempFolder();
        var s = new Scenario(fs, scratch);
        await s.SetUpAsync(digHoles: true);

        // (a) Chunks [2M, 6M) were never copied: both snapshots need copies, and the COW files have no blocks there.
        var r = await s.WriteAsync(null, 4, 2 * Mi, 4 * Mi);
        var problems = NoSpaceProblems(r, "origin write 4 on a full disk");
        s.Origin.MayHold(4, 2 * Mi, 4 * Mi); // failed: each sector may hold it or what it held

        // (b) Every snapshot valid, every acknowledged write and every point in time intact.
        problems.AddRange(await s.CheckAsync());
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public async Task A_snapshot_write_on_a_full_disk_fails_with_no_space_and_the_snapshot_stays_valid()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync();
        using var scratch = new TempFolder();
        var s = new Scenario(fs, scratch);
        await s.SetUpAsync(digHoles: true);

        // (c) s1 holds no exception in [6M, 7M): the write needs new COW chunks.
        var r = await s.WriteAsync("s1", 5, 6 * Mi, Mi);
        var problems = NoSpaceProblems(r, "write 5 to snapshot s1 on a full disk");
        s.Snapshots["s1"].MayHold(5, 6 * Mi, Mi);
        problems.AddRange(await s.CheckAsync());
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public async Task After_space_is_freed_the_writes_that_failed_for_space_succeed()
    {
        using var fs = await LoopMountedFileSystem.CreateAsync();
        using var scratch = new TempFolder();
        var s = new Scenario(fs, scratch);
        await s.SetUpAsync(digHoles: true);
        var failedOrigin = await s.WriteAsync(null, 4, 2 * Mi, 4 * Mi);
        s.Origin.MayHold(4, 2 * Mi, 4 * Mi);
        var failedSnapshot = await s.WriteAsync("s1", 5, 6 * Mi, Mi);
        s.Snapshots["s1"].MayHold(5, 6 * Mi, Mi);
        var problems = NoSpaceProblems(failedOrigin, "origin write 4 on a full disk");
        problems.AddRange(NoSpaceProblems(failedSnapshot, "write 5 to snapshot s1 on a full disk"));

        // (d) With the filler gone, the same writes (new stamps, same ranges) succeed and everything reads right.
        fs.Free();
        var origin = await s.WriteAsync(null, 6, 2 * Mi, 4 * Mi);
        if (origin.ExitCode != 0 || !origin.Stdout.Contains("(durable)", StringComparison.Ordinal))
            problems.Add($"origin write 6 after space was freed: expected exit 0 and (durable): {origin}");
        else s.Origin.Acknowledge(6, 2 * Mi, 4 * Mi);
        var snapshot = await s.WriteAsync("s1", 7, 6 * Mi, Mi);
        if (snapshot.ExitCode != 0 || !snapshot.Stdout.Contains("(durable)", StringComparison.Ordinal))
            problems.Add($"write 7 to s1 after space was freed: expected exit 0 and (durable): {snapshot}");
        else s.Snapshots["s1"].Acknowledge(7, 6 * Mi, Mi);
        problems.AddRange(await s.CheckAsync());
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public async Task A_full_disk_never_invalidates_a_snapshot_and_a_write_says_durable_only_when_it_is()
    {
        // The issue's own reproduction: no holes punched; the COW files are as the store made them.
        using var fs = await LoopMountedFileSystem.CreateAsync();
        using var scratch = new TempFolder();
        var s = new Scenario(fs, scratch);
        await s.SetUpAsync(digHoles: false);

        var r = await s.WriteAsync(null, 4, 2 * Mi, 4 * Mi);
        var problems = new List<string>();
        if (r.ExitCode == 0)
        {
            // Allowed when the space was reserved ahead: then it must be true.
            s.Origin.Acknowledge(4, 2 * Mi, 4 * Mi);
        }
        else
        {
            problems.AddRange(NoSpaceProblems(r, "origin write 4 on a full disk"));
            s.Origin.MayHold(4, 2 * Mi, 4 * Mi);
        }
        var w = await s.WriteAsync("s2", 5, 6 * Mi, Mi);
        if (w.ExitCode == 0) s.Snapshots["s2"].Acknowledge(5, 6 * Mi, Mi);
        else
        {
            problems.AddRange(NoSpaceProblems(w, "write 5 to snapshot s2 on a full disk"));
            s.Snapshots["s2"].MayHold(5, 6 * Mi, Mi);
        }
        problems.AddRange(await s.CheckAsync());
        Assert.True(problems.Count == 0, $"origin write: {r}\nsnapshot write: {w}\n" + string.Join("\n", problems));
    }

    /// <summary>
    /// What is wrong with a write that had no space: it must exit 2 with one line saying "no space left on device" and
    /// naming the COW file, and must not claim "durable".
    /// </summary>
    private static List<string> NoSpaceProblems(ToolResult r, string what)
    {
        var problems = new List<string>();
        if (r.ExitCode != 2) problems.Add($"{what}: expected exit 2, got {r.ExitCode}");
        if ((r.Stdout + r.Stderr).Contains("durable", StringComparison.Ordinal)) problems.Add($"{what}: says 'durable' although it had no space");
        var lines = r.ErrorLines.Where(l => !l.Contains("journal was replayed", StringComparison.Ordinal)).ToArray();
        if (lines.Length != 1 || !lines[0].Contains("no space left on device", StringComparison.OrdinalIgnoreCase) || !lines[0].Contains(".cow", StringComparison.Ordinal))
            problems.Add($"{what}: expected one error line naming the COW file and saying 'no space left on device'");
        if (problems.Count > 0) problems.Add($"  {what}: {r.ToString().ReplaceLineEndings("\n    ")}");
        return problems;
    }

    /// <summary>The store of these tests on the loop-mounted file system, and the model of what it must hold.</summary>
    private sealed class Scenario(LoopMountedFileSystem fs, TempFolder scratch)
    {
        public string Store { get; } = Path.Combine(fs.MountPoint, "store");

        public VolumeModel Origin { get; } = new(8 * Mi);

        public Dictionary<string, VolumeModel> Snapshots { get; } = new();

        public async Task SetUpAsync(bool digHoles)
        {
            await Tool.SnapCtlOk("init", Store, "--origin-size", "8M", "--chunk-size", "4K");
            await Ok(null, 1, 0, 8 * Mi);
            await Tool.SnapCtlOk("snapshot", "create", Store, "s1");
            Snapshots["s1"] = Origin.Clone();
            await Ok(null, 2, 0, Mi);
            await Tool.SnapCtlOk("snapshot", "create", Store, "s2");
            Snapshots["s2"] = Origin.Clone();
            await Ok("s2", 3, Mi, Mi / 2);
            if (digHoles)
                foreach (var cow in Directory.EnumerateFiles(Store, "*.cow")) LoopMountedFileSystem.DigHoles(cow);
            fs.Fill();
            Assert.True(fs.AvailableBytes < 64 << 10, $"the file system is not full: {fs.AvailableBytes} bytes available");
        }

        public async Task<ToolResult> WriteAsync(string? snapshot, long write, long sector, int sectors)
        {
            string input = Tool.StampFile(scratch.Path, Tag, write, sector, sectors);
            var r = await Tool.SnapCtl(Tool.WriteArgs(Store, snapshot, sector, input));
            File.Delete(input);
            return r;
        }

        private async Task Ok(string? snapshot, long write, long sector, int sectors)
        {
            var r = await WriteAsync(snapshot, write, sector, sectors);
            Assert.True(r.ExitCode == 0, $"write {write}: {r}");
            (snapshot is null ? Origin : Snapshots[snapshot]).Acknowledge(write, sector, sectors);
        }

        /// <summary>
        /// What is wrong with the store now: <c>snapctl status --json</c> must list s1 and s2 valid; every sector of the
        /// origin and both snapshots must hold what the model allows.
        /// </summary>
        public async Task<List<string>> CheckAsync()
        {
            var problems = new List<string>();
            var status = await Tool.SnapCtl("status", Store, "--json");
            if (status.ExitCode != 0)
            {
                problems.Add($"snapctl status: {status}");
            }
            else
            {
                using var json = JsonDocument.Parse(status.Stdout);
                var listed = json.RootElement.GetProperty("snapshots").EnumerateArray().ToDictionary(e => e.GetProperty("name").GetString()!);
                foreach (var name in Snapshots.Keys)
                {
                    if (!listed.TryGetValue(name, out var e)) problems.Add($"snapshot {name}: missing from status");
                    else if (!e.GetProperty("valid").GetBoolean())
                        problems.Add($"snapshot {name}: {e.GetProperty("status").GetString()} ({e.GetProperty("invalid_reason")}): a full disk invalidated it");
                }
            }
            StoreImage image;
            try
            {
                image = await StoreImage.ReadAsync(Store);
            }
            catch (Exception e) when (e is not TimeoutException)
            {
                problems.Add($"the store does not open: {e.GetType().Name}: {e.Message}");
                return problems;
            }
            image.Check("origin", Origin, Tag, problems);
            foreach (var (name, model) in Snapshots) image.Check(name, model, Tag, problems);
            return problems;
        }

    }
}
