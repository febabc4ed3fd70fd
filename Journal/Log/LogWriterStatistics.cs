using System.Globalization;

namespace Journal.Log;

/// <summary>Counts kept by a <see cref="LogWriter"/> since it was opened.</summary>
/// <param name="Records">Records written (data, pad and unmount).</param>
/// <param name="PadRecords">Pad records written to skip the last block before the end of the log.</param>
/// <param name="Ops">Ops written (start, region pieces, commit).</param>
/// <param name="PayloadBytes">Payload bytes written (op headers and data).</param>
/// <param name="BytesWritten">Bytes written to the device for records (whole blocks, headers included).</param>
/// <param name="Flushes">Device flushes issued; each makes every record written before it durable.</param>
/// <param name="Forces">Calls to force the log.</param>
/// <param name="ForcesWithoutIo">Forces of an LSN that was already durable (no I/O, no wait).</param>
/// <param name="ForceWaits">Forces that had to wait for a write and a flush.</param>
/// <param name="BufferWaits">Times a writer waited for a free in-core log buffer.</param>
/// <param name="SpaceWaits">Times a writer waited for the tail to move because the log was full.</param>
/// <param name="TransactionIds">Transaction ids handed out.</param>
/// <param name="BuffersHeld">In-core log buffers the writer holds now (its reserve and rented ones).</param>
/// <param name="BuffersReserved">Buffers held from open to close.</param>
/// <param name="BufferMemoryWaits">Times a writer found every held buffer in use and waited for one to come back or be rented.</param>
/// <param name="BuffersRented">Buffers rented from the journal's pool.</param>
/// <param name="BuffersReturned">Rented buffers given back to the pool (when the writer fell idle).</param>
/// <param name="RentFailures">Rents the pool could not serve (budget exhausted or allocator failed); the writer went on with the buffers it held.</param>
internal readonly record struct LogWriterStatistics(
    long Records, long PadRecords, long Ops, long PayloadBytes, long BytesWritten, long Flushes,
    long Forces, long ForcesWithoutIo, long ForceWaits, long BufferWaits, long SpaceWaits, long TransactionIds,
    long BuffersHeld, long BuffersReserved, long BufferMemoryWaits, long BuffersRented, long BuffersReturned, long RentFailures)
{
    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"records={Records} pads={PadRecords} ops={Ops} payload={PayloadBytes} written={BytesWritten} flushes={Flushes} " +
        $"forces={Forces} (no-io {ForcesWithoutIo}, waited {ForceWaits}) buffer-waits={BufferWaits} space-waits={SpaceWaits} tids={TransactionIds} " +
        $"buffers={BuffersHeld} (reserved {BuffersReserved}, memory-waits {BufferMemoryWaits}, rented {BuffersRented}, returned {BuffersReturned}, rent-failures {RentFailures})");
}
