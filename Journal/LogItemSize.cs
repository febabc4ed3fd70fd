namespace Journal;

/// <summary>
/// The size of a log item's current state as it will be logged: how many regions and how many bytes in total.
/// <see cref="LogItem.FormatLog"/> must not write more regions or bytes than the last size reported.
/// </summary>
/// <param name="Regions">Number of regions (0 to 65535).</param>
/// <param name="Bytes">Total bytes of all regions (0 to 16 MiB minus the item header).</param>
public readonly record struct LogItemSize(int Regions, int Bytes);
