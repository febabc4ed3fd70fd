using System.Runtime.InteropServices;

namespace Snapshot.Recovery;

/// <summary>
/// Whether a path names a regular file, found out without opening it: opening a FIFO for reading blocks until a
/// writer appears, so a tool that opened a FIFO given as a log would hang. Linux: <c>statx</c> (symbolic links are
/// followed); elsewhere only directories are told apart.
/// </summary>
internal static partial class RegularFile
{
    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1;
    private const int ModeOffset = 28;   // stx_mode (u16) in struct statx, the same on every architecture

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int StatX(int dirFd, string path, int flags, uint mask, [Out] byte[] buffer);

    /// <summary>
    /// Null when <paramref name="path"/> is a regular file (or a link to one) or does not exist; otherwise what it is
    /// ("a directory", "a FIFO", "a character device", "a block device", "a socket").
    /// </summary>
    public static string? WhatElse(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) return "a directory";
        if (!OperatingSystem.IsLinux()) return null;
        var buf = new byte[256];
        int rc;
        try
        {
            rc = StatX(AtFdCwd, path, 0, StatxType, buf);
        }
        catch (EntryPointNotFoundException)
        {
            return null;   // a C library without statx: only directories are told apart
        }
        if (rc != 0) return null;   // missing or unreadable: the open reports it
        int mode = BitConverter.ToUInt16(buf, ModeOffset) & 0xF000;
        return mode switch
        {
            0x8000 => null,
            0x4000 => "a directory",
            0x1000 => "a FIFO",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            _ => "not a regular file",
        };
    }
}
