using Journal.Format;
using Journal.Log;

namespace Journal.Cil;

/// <summary>
/// Converts what the CIL holds (regions and bytes) into log space, linearly, so that costs add up: the cost of a
/// checkpoint is never more than the sum of its items' costs plus <see cref="ContextOverhead"/>.
/// </summary>
/// <remarks>
/// The slopes are measured once from the log's own worst-case function (<see cref="ILogSink.GetReservationBytes"/>)
/// over many regions and many bytes, so per-record headers and op headers are included on average and rounding is
/// paid once per checkpoint in the overhead (plus two blocks of slack). Integer arithmetic only: the commit path calls
/// it under the context lock.
/// </remarks>
internal sealed class LogCostModel
{
    private const int RegionSample = 4096;
    private const int ByteSampleShift = 22; // 4 MiB
    private readonly long _perRegionSample;  // cost of RegionSample empty regions
    private readonly long _perByteSample;    // cost of 2^ByteSampleShift bytes in one region

    public LogCostModel(ILogSink sink)
    {
        long f0 = sink.GetReservationBytes(0, 0);
        _perRegionSample = Math.Max(RegionSample, sink.GetReservationBytes(RegionSample, 0) - f0);
        _perByteSample = Math.Max(1L << ByteSampleShift, sink.GetReservationBytes(1, 1L << ByteSampleShift) - sink.GetReservationBytes(1, 0));
        ContextOverhead = sink.GetReservationBytes(1, CheckpointHeader.Size) + 2 * 512;
    }

    /// <summary>Fixed log space of one checkpoint (start and commit ops, its header, rounding slack).</summary>
    public long ContextOverhead { get; }

    /// <summary>Log space of <paramref name="regions"/> regions totalling <paramref name="bytes"/> bytes.</summary>
    public long Cost(int regions, long bytes) =>
        (regions * _perRegionSample + RegionSample - 1) / RegionSample
        + ((bytes * _perByteSample + (1L << ByteSampleShift) - 1) >> ByteSampleShift);

    /// <summary>Log space of an item of <paramref name="size"/> in a checkpoint (its header region included).</summary>
    public long ItemCost(LogItemSize size) => Cost(size.Regions + 1, (long)size.Bytes + ItemHeader.SizeFor(size.Regions));
}
