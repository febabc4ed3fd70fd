using System.Globalization;
using Journal.Tests.Tools;
using Xunit.Abstractions;

namespace Journal.Tests.Campaign;

/// <summary>
/// The standing crash campaign (<see cref="CrashCampaign"/>): kill -9 at random points of real <c>snapctl</c> writes
/// (origin and writable snapshots), snapshot create, delete and merge, and <c>jreplay replay</c>; every sector of
/// every volume checked against what was acknowledged. Sized by environment variables (docs/testing.md):
/// <c>JOURNAL_CAMPAIGN_SEED</c> (default: a new one each run, printed), <c>JOURNAL_CAMPAIGN_ITERATIONS</c> (default
/// 20), <c>JOURNAL_CAMPAIGN_MINUTES</c> (run for that long instead).
/// </summary>
public sealed class CrashCampaignTests(ITestOutputHelper output)
{
    private const int DefaultIterations = 20;

    [Fact]
    public async Task Kill_9_at_random_points_loses_no_acknowledged_write_and_no_snapshot_point_in_time()
    {
        int seed = Env("JOURNAL_CAMPAIGN_SEED") ?? Random.Shared.Next(1, 1_000_000);
        int iterations = Env("JOURNAL_CAMPAIGN_ITERATIONS") ?? DefaultIterations;
        double? minutes = double.TryParse(Environment.GetEnvironmentVariable("JOURNAL_CAMPAIGN_MINUTES"), NumberStyles.Float,
            CultureInfo.InvariantCulture, out double m) && m > 0 ? m : null;
        using var folder = new TempFolder();
        var campaign = new CrashCampaign(folder.Path, seed, output.WriteLine);
        output.WriteLine($"crash campaign seed {seed}: {campaign.Geometry}; " +
            (minutes is { } mm ? $"{mm} minutes" : $"{iterations} steps") + $"; reproduce with {campaign.Reproduce(iterations)}");
        try
        {
            await campaign.RunAsync(iterations, minutes is { } mins ? DateTime.UtcNow.AddMinutes(mins) : null, iterations);
        }
        finally
        {
            output.WriteLine(campaign.Summary());
        }
    }

    private static int? Env(string name) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : null;
}
