using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Nbd;

/// <summary>
/// Every error reply is also one log line and one count of <c>nbd.request.errors</c>, including the ones decided deep in
/// a command (not only by the checks before it runs).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdErrorLogTests
{
    [Fact]
    public async Task Block_status_of_length_zero_at_the_end_of_the_export_is_an_error_that_is_logged_and_counted()
    {
        const long Size = 16 << 20;
        await using var h = await NbdHarness.StartAsync(originBytes: Size);
        await using var c = await h.OpenAsync("origin", structured: true, BaseAllocation);
        long errorsBefore = h.Server.Counters.Errors;
        int linesBefore = h.Log.Count("BLOCK_STATUS at the end of the export");

        var r = await c.RoundTripAsync(CmdBlockStatus, Size, 0);
        Assert.Equal(EINVAL, r.Error);
        Assert.Empty(r.Extents);

        Assert.Equal(errorsBefore + 1, h.Server.Counters.Errors);
        Assert.Equal(linesBefore + 1, h.Log.Count("BLOCK_STATUS at the end of the export"));
        Assert.True(h.Log.Contains($"BLOCK_STATUS of 0 bytes at offset {Size}: EINVAL"), string.Join("\n", h.Log.Lines.Select(l => l.Text)));
        // A zero-length query inside the export is answered (one extent), not an error.
        Assert.Equal(0u, (await c.RoundTripAsync(CmdBlockStatus, 0, 0)).Error);
        Assert.Equal(errorsBefore + 1, h.Server.Counters.Errors);
    }
}
