namespace Journal.Storage;

/// <summary>
/// A write or a growth failed because the device (or the file system under a file device) has no space left
/// (ENOSPC). Nothing past the failed operation was made durable by it.
/// </summary>
public class DeviceFullException : BlockDeviceException
{
    /// <summary>Creates the error.</summary>
    public DeviceFullException(string device, long sector, string problem, Exception? inner = null)
        : base(device, sector, problem, inner) { }
}
