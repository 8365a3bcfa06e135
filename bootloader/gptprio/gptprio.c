/* gptprio.c: A/B boot partition choice from the GPT priority, tries and successful bits.  */
/*
 *  Copyright (C) 2026  The project's authors
 *
 *  This module is free software: you can redistribute it and/or modify it under the terms of
 *  the GNU General Public License as published by the Free Software Foundation, either version
 *  3 of the License, or (at your option) any later version (see COPYING in this folder).
 *
 *  It is distributed in the hope that it will be useful, but WITHOUT ANY WARRANTY; without
 *  even the implied warranty of MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.
 */

/*
 * Commands:
 *
 *   gptprio.next -d DEVVAR -u UUIDVAR [DISK]
 *     Of the partitions of type BOOT (6b636168-7420-6568-2070-6c616e657421), in table order,
 *     the bootable ones are those with (priority > 0 and tries > 0) or successful: the same
 *     rule as signpost's will_boot, so the host tools and the bootloader never disagree. The
 *     strictly highest priority wins; the first in table order wins a tie. If the winner has
 *     tries left, one is spent and the table written back before anything is booted: both
 *     headers are validated, a damaged copy is rebuilt from the good one, both CRCs are
 *     recomputed, and the backup copy is written before the primary. DEVVAR is set to the
 *     chosen partition's GRUB device (e.g. hd0,gpt3), UUIDVAR to its unique GUID.
 *     DISK defaults to the disk of $root.
 *
 *   gptprio.find_label -s VAR LABEL [DISK]
 *     Set VAR to the device of the first partition whose GPT name is LABEL (ASCII).
 *
 * Attribute bits (64-bit little-endian field at byte 48 of an entry): priority 48-51,
 * tries left 52-55, successful 56.
 */

#include <grub/dl.h>
#include <grub/disk.h>
#include <grub/env.h>
#include <grub/err.h>
#include <grub/extcmd.h>
#include <grub/i18n.h>
#include <grub/misc.h>
#include <grub/mm.h>
#include <grub/types.h>

GRUB_MOD_LICENSE ("GPLv3+");

#define PRIORITY_SHIFT 48
#define TRIES_SHIFT 52
#define SUCCESSFUL_BIT 56
#define NIBBLE 0xfULL

/* Limits that keep a hostile table from making us read or allocate without bound.  */
#define MIN_HEADER_SIZE 92
#define MIN_ENTRY_SIZE 128
#define MAX_ENTRY_BYTES (1024 * 1024)

/* The BOOT type GUID as stored on disk (its bytes spell "hack the planet!").  */
static const grub_uint8_t boot_type[16] = {
  'h', 'a', 'c', 'k', ' ', 't', 'h', 'e', ' ', 'p', 'l', 'a', 'n', 'e', 't', '!'
};

/* Header fields, by byte offset (UEFI 2.x, 5.3.2).  */
#define H_SIGNATURE 0
#define H_HEADER_SIZE 12
#define H_HEADER_CRC 16
#define H_MY_LBA 24
#define H_ALTERNATE_LBA 32
#define H_ENTRIES_LBA 72
#define H_ENTRY_COUNT 80
#define H_ENTRY_SIZE 84
#define H_ENTRIES_CRC 88

/* Entry fields.  */
#define E_TYPE 0
#define E_UNIQUE 16
#define E_ATTRIBUTES 48
#define E_NAME 56

static grub_uint32_t crc_table[256];

static void
crc_init (void)
{
  grub_uint32_t i, j, c;
  for (i = 0; i < 256; i++)
    {
      c = i;
      for (j = 0; j < 8; j++)
	c = (c & 1) ? (0xedb88320U ^ (c >> 1)) : (c >> 1);
      crc_table[i] = c;
    }
}

/* CRC-32 (IEEE 802.3), as GPT uses.  */
static grub_uint32_t
crc32 (const grub_uint8_t *data, grub_size_t len)
{
  grub_uint32_t c = 0xffffffffU;
  while (len--)
    c = crc_table[(c ^ *data++) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffU;
}

static grub_uint32_t
get32 (const grub_uint8_t *p)
{
  return (grub_uint32_t) p[0] | ((grub_uint32_t) p[1] << 8)
    | ((grub_uint32_t) p[2] << 16) | ((grub_uint32_t) p[3] << 24);
}

static grub_uint64_t
get64 (const grub_uint8_t *p)
{
  return (grub_uint64_t) get32 (p) | ((grub_uint64_t) get32 (p + 4) << 32);
}

static void
put32 (grub_uint8_t *p, grub_uint32_t v)
{
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
  p[2] = (v >> 16) & 0xff;
  p[3] = (v >> 24) & 0xff;
}

static void
put64 (grub_uint8_t *p, grub_uint64_t v)
{
  put32 (p, (grub_uint32_t) v);
  put32 (p + 4, (grub_uint32_t) (v >> 32));
}

/* One copy (primary or backup) of the partition table.  */
struct gpt_copy
{
  int valid;
  grub_uint64_t lba;		/* where its header is (logical sectors) */
  grub_uint8_t *header;		/* one logical sector */
  grub_uint8_t *entries;	/* entry_count * entry_size bytes */
};

struct gpt
{
  grub_disk_t disk;
  grub_uint32_t sector_size;
  grub_uint64_t last_lba;	/* GRUB_DISK_SIZE_UNKNOWN when the firmware does not say */
  struct gpt_copy primary;
  struct gpt_copy backup;
  /* The authoritative copy's geometry.  */
  const struct gpt_copy *good;
  grub_uint32_t entry_count;
  grub_uint32_t entry_size;
  grub_size_t entry_bytes;
};

/* A logical sector number in GRUB's 512-byte units.  */
static grub_disk_addr_t
to_grub_sector (const struct gpt *gpt, grub_uint64_t lba)
{
  return lba << (gpt->disk->log_sector_size - GRUB_DISK_SECTOR_BITS);
}

static void
free_copy (struct gpt_copy *copy)
{
  grub_free (copy->header);
  grub_free (copy->entries);
  copy->header = 0;
  copy->entries = 0;
  copy->valid = 0;
}

static void
gpt_close (struct gpt *gpt)
{
  free_copy (&gpt->primary);
  free_copy (&gpt->backup);
  if (gpt->disk)
    grub_disk_close (gpt->disk);
  gpt->disk = 0;
}

/* Read and check the copy whose header is at LBA. A copy that fails a check is left
   invalid (not an error): the other copy may still be good.  */
static grub_err_t
read_copy (struct gpt *gpt, struct gpt_copy *copy, grub_uint64_t lba)
{
  grub_uint8_t *h;
  grub_uint32_t header_size, stored_crc, count, size;
  grub_uint64_t bytes;

  copy->lba = lba;
  copy->valid = 0;
  copy->header = grub_zalloc (gpt->sector_size);
  if (!copy->header)
    return grub_errno;
  h = copy->header;
  if (grub_disk_read (gpt->disk, to_grub_sector (gpt, lba), 0, gpt->sector_size, h))
    {
      /* An unreadable copy is a damaged copy.  */
      grub_errno = GRUB_ERR_NONE;
      return GRUB_ERR_NONE;
    }
  if (grub_memcmp (h + H_SIGNATURE, "EFI PART", 8) != 0)
    return GRUB_ERR_NONE;
  header_size = get32 (h + H_HEADER_SIZE);
  if (header_size < MIN_HEADER_SIZE || header_size > gpt->sector_size)
    return GRUB_ERR_NONE;
  stored_crc = get32 (h + H_HEADER_CRC);
  put32 (h + H_HEADER_CRC, 0);
  if (crc32 (h, header_size) != stored_crc)
    {
      put32 (h + H_HEADER_CRC, stored_crc);
      return GRUB_ERR_NONE;
    }
  put32 (h + H_HEADER_CRC, stored_crc);
  if (get64 (h + H_MY_LBA) != lba)
    return GRUB_ERR_NONE;
  count = get32 (h + H_ENTRY_COUNT);
  size = get32 (h + H_ENTRY_SIZE);
  bytes = (grub_uint64_t) count * size;
  if (size < MIN_ENTRY_SIZE || (size % 8) != 0 || count == 0 || bytes > MAX_ENTRY_BYTES)
    return GRUB_ERR_NONE;
  copy->entries = grub_malloc (bytes);
  if (!copy->entries)
    return grub_errno;
  if (grub_disk_read (gpt->disk, to_grub_sector (gpt, get64 (h + H_ENTRIES_LBA)), 0,
		      bytes, copy->entries))
    {
      grub_errno = GRUB_ERR_NONE;
      return GRUB_ERR_NONE;
    }
  if (crc32 (copy->entries, bytes) != get32 (h + H_ENTRIES_CRC))
    return GRUB_ERR_NONE;
  copy->valid = 1;
  return GRUB_ERR_NONE;
}

/* The disk named by NAME, or the disk of $root when NAME is null.  */
static char *
disk_name (const char *name)
{
  const char *start, *end;
  if (!name)
    name = grub_env_get ("root");
  if (!name || !*name)
    {
      grub_error (GRUB_ERR_BAD_ARGUMENT, N_("no disk given and $root is not set"));
      return 0;
    }
  start = name;
  if (*start == '(')
    start++;
  end = start;
  while (*end && *end != ',' && *end != ')')
    end++;
  return grub_strndup (start, end - start);
}

static grub_err_t
gpt_open (struct gpt *gpt, const char *name)
{
  char *disk;
  grub_uint64_t sectors;

  grub_memset (gpt, 0, sizeof (*gpt));
  disk = disk_name (name);
  if (!disk)
    return grub_errno;
  gpt->disk = grub_disk_open (disk);
  grub_free (disk);
  if (!gpt->disk)
    return grub_errno;
  gpt->sector_size = 1U << gpt->disk->log_sector_size;
  sectors = grub_disk_native_sectors (gpt->disk);
  if (sectors == GRUB_DISK_SIZE_UNKNOWN)
    gpt->last_lba = GRUB_DISK_SIZE_UNKNOWN;
  else
    gpt->last_lba = (sectors >> (gpt->disk->log_sector_size - GRUB_DISK_SECTOR_BITS)) - 1;

  if (read_copy (gpt, &gpt->primary, 1))
    return grub_errno;
  if (gpt->primary.valid)
    {
      if (read_copy (gpt, &gpt->backup, get64 (gpt->primary.header + H_ALTERNATE_LBA)))
	return grub_errno;
    }
  else if (gpt->last_lba != GRUB_DISK_SIZE_UNKNOWN)
    {
      if (read_copy (gpt, &gpt->backup, gpt->last_lba))
	return grub_errno;
    }
  if (gpt->primary.valid)
    gpt->good = &gpt->primary;
  else if (gpt->backup.valid)
    gpt->good = &gpt->backup;
  else
    return grub_error (GRUB_ERR_BAD_PART_TABLE,
		       N_("no valid GPT on %s (both copies damaged)"), gpt->disk->name);
  gpt->entry_count = get32 (gpt->good->header + H_ENTRY_COUNT);
  gpt->entry_size = get32 (gpt->good->header + H_ENTRY_SIZE);
  gpt->entry_bytes = (grub_size_t) gpt->entry_count * gpt->entry_size;
  return GRUB_ERR_NONE;
}

static const grub_uint8_t *
entry (const struct gpt *gpt, grub_uint32_t index)
{
  return gpt->good->entries + (grub_size_t) index * gpt->entry_size;
}

/* Write one copy: ENTRIES at the copy's entry LBA, then its header at MY_LBA.  */
static grub_err_t
write_copy (struct gpt *gpt, const grub_uint8_t *entries, grub_uint64_t my_lba,
	    grub_uint64_t alternate_lba, grub_uint64_t entries_lba)
{
  grub_uint8_t *h;
  grub_uint32_t header_size;
  grub_err_t err;

  h = grub_malloc (gpt->sector_size);
  if (!h)
    return grub_errno;
  grub_memcpy (h, gpt->good->header, gpt->sector_size);
  header_size = get32 (h + H_HEADER_SIZE);
  put64 (h + H_MY_LBA, my_lba);
  put64 (h + H_ALTERNATE_LBA, alternate_lba);
  put64 (h + H_ENTRIES_LBA, entries_lba);
  put32 (h + H_ENTRIES_CRC, crc32 (entries, gpt->entry_bytes));
  put32 (h + H_HEADER_CRC, 0);
  put32 (h + H_HEADER_CRC, crc32 (h, header_size));
  err = grub_disk_write (gpt->disk, to_grub_sector (gpt, entries_lba), 0, gpt->entry_bytes,
			 entries);
  if (!err)
    err = grub_disk_write (gpt->disk, to_grub_sector (gpt, my_lba), 0, gpt->sector_size, h);
  grub_free (h);
  return err;
}

/* Write ENTRIES as both copies, backup first. A damaged copy is rebuilt at the standard
   place: the primary's entries at LBA 2, the backup's just before the backup header.  */
static grub_err_t
gpt_write (struct gpt *gpt, const grub_uint8_t *entries)
{
  grub_uint64_t backup_lba, entry_sectors, primary_entries, backup_entries;
  grub_err_t err;

  entry_sectors = (gpt->entry_bytes + gpt->sector_size - 1) / gpt->sector_size;
  if (gpt->primary.valid)
    backup_lba = get64 (gpt->primary.header + H_ALTERNATE_LBA);
  else
    backup_lba = gpt->backup.lba;
  if (gpt->backup.valid)
    backup_entries = get64 (gpt->backup.header + H_ENTRIES_LBA);
  else
    backup_entries = backup_lba - entry_sectors;
  if (gpt->primary.valid)
    primary_entries = get64 (gpt->primary.header + H_ENTRIES_LBA);
  else
    primary_entries = 2;
  if (backup_lba <= 1 + entry_sectors
      || (gpt->last_lba != GRUB_DISK_SIZE_UNKNOWN && backup_lba > gpt->last_lba))
    return grub_error (GRUB_ERR_BAD_PART_TABLE, N_("GPT backup header location is invalid"));

  err = write_copy (gpt, entries, backup_lba, 1, backup_entries);
  if (err)
    return err;
  return write_copy (gpt, entries, 1, backup_lba, primary_entries);
}

static void
format_guid (char *out, grub_size_t len, const grub_uint8_t *g)
{
  grub_snprintf (out, len,
		 "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 get32 (g), (unsigned) (g[4] | (g[5] << 8)), (unsigned) (g[6] | (g[7] << 8)),
		 g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

static grub_err_t
set_device (const char *var, const struct gpt *gpt, grub_uint32_t index)
{
  char *device = grub_xasprintf ("%s,gpt%u", gpt->disk->name, index + 1);
  grub_err_t err;
  if (!device)
    return grub_errno;
  err = grub_env_set (var, device);
  grub_free (device);
  return err;
}

static const struct grub_arg_option next_options[] = {
  {"set-device", 'd', 0, N_("Set VARNAME to the chosen partition's device."),
   N_("VARNAME"), ARG_TYPE_STRING},
  {"set-uuid", 'u', 0, N_("Set VARNAME to the chosen partition's unique GUID."),
   N_("VARNAME"), ARG_TYPE_STRING},
  {0, 0, 0, 0, 0, 0}
};

static grub_err_t
cmd_next (grub_extcmd_context_t ctxt, int argc, char **args)
{
  struct grub_arg_list *state = ctxt->state;
  struct gpt gpt;
  grub_uint8_t *entries = 0;
  grub_uint32_t i, chosen = 0;
  int found = 0;
  unsigned best_priority = 0, priority, tries;
  grub_uint64_t attributes;
  char uuid[37];
  grub_err_t err;

  if (!state[0].set || !state[1].set)
    return grub_error (GRUB_ERR_BAD_ARGUMENT, N_("-d and -u are required"));
  if (argc > 1)
    return grub_error (GRUB_ERR_BAD_ARGUMENT, N_("at most one disk"));

  err = gpt_open (&gpt, argc ? args[0] : 0);
  if (err)
    goto out;

  for (i = 0; i < gpt.entry_count; i++)
    {
      const grub_uint8_t *e = entry (&gpt, i);
      if (grub_memcmp (e + E_TYPE, boot_type, sizeof (boot_type)) != 0)
	continue;
      attributes = get64 (e + E_ATTRIBUTES);
      priority = (attributes >> PRIORITY_SHIFT) & NIBBLE;
      tries = (attributes >> TRIES_SHIFT) & NIBBLE;
      grub_dprintf ("gptprio", "partition %u: priority %u tries %u successful %u\n", i + 1,
		    priority, tries, (unsigned) ((attributes >> SUCCESSFUL_BIT) & 1));
      if (!((priority > 0 && tries > 0) || ((attributes >> SUCCESSFUL_BIT) & 1)))
	continue;
      if (!found || priority > best_priority)
	{
	  found = 1;
	  chosen = i;
	  best_priority = priority;
	}
    }
  if (!found)
    {
      err = grub_error (GRUB_ERR_UNKNOWN_DEVICE, N_("no bootable BOOT partition on %s"),
			gpt.disk->name);
      goto out;
    }

  attributes = get64 (entry (&gpt, chosen) + E_ATTRIBUTES);
  tries = (attributes >> TRIES_SHIFT) & NIBBLE;
  if (tries > 0)
    {
      entries = grub_malloc (gpt.entry_bytes);
      if (!entries)
	{
	  err = grub_errno;
	  goto out;
	}
      grub_memcpy (entries, gpt.good->entries, gpt.entry_bytes);
      attributes &= ~(NIBBLE << TRIES_SHIFT);
      attributes |= ((grub_uint64_t) (tries - 1)) << TRIES_SHIFT;
      put64 (entries + (grub_size_t) chosen * gpt.entry_size + E_ATTRIBUTES, attributes);
      err = gpt_write (&gpt, entries);
      if (err)
	goto out;
    }

  format_guid (uuid, sizeof (uuid), entry (&gpt, chosen) + E_UNIQUE);
  grub_printf ("gptprio: chose %s,gpt%u (priority %u, tries %u%s, successful %u)\n",
	       gpt.disk->name, chosen + 1, best_priority, tries,
	       tries > 0 ? " -> spent one" : "",
	       (unsigned) ((attributes >> SUCCESSFUL_BIT) & 1));
  err = set_device (state[0].arg, &gpt, chosen);
  if (!err)
    err = grub_env_set (state[1].arg, uuid);

out:
  grub_free (entries);
  gpt_close (&gpt);
  return err;
}

static const struct grub_arg_option label_options[] = {
  {"set", 's', 0, N_("Set VARNAME to the partition's device."), N_("VARNAME"), ARG_TYPE_STRING},
  {0, 0, 0, 0, 0, 0}
};

/* Whether the UTF-16LE GPT name NAME (36 units) equals the ASCII string LABEL.  */
static int
name_is (const grub_uint8_t *name, const char *label)
{
  grub_size_t i, len = grub_strlen (label);
  if (len > 36)
    return 0;
  for (i = 0; i < 36; i++)
    {
      unsigned unit = name[2 * i] | (name[2 * i + 1] << 8);
      unsigned want = i < len ? (unsigned char) label[i] : 0;
      if (unit != want)
	return 0;
      if (want == 0)
	return 1;
    }
  return 1;
}

static grub_err_t
cmd_find_label (grub_extcmd_context_t ctxt, int argc, char **args)
{
  struct grub_arg_list *state = ctxt->state;
  struct gpt gpt;
  grub_uint32_t i;
  grub_err_t err;

  if (!state[0].set || argc < 1 || argc > 2)
    return grub_error (GRUB_ERR_BAD_ARGUMENT, N_("usage: -s VARNAME LABEL [DISK]"));
  err = gpt_open (&gpt, argc > 1 ? args[1] : 0);
  if (!err)
    {
      err = grub_error (GRUB_ERR_FILE_NOT_FOUND, N_("no partition named %s on %s"), args[0],
			gpt.disk->name);
      for (i = 0; i < gpt.entry_count; i++)
	if (name_is (entry (&gpt, i) + E_NAME, args[0]))
	  {
	    grub_errno = GRUB_ERR_NONE;
	    grub_printf ("gptprio: found %s at %s,gpt%u\n", args[0], gpt.disk->name, i + 1);
	    err = set_device (state[0].arg, &gpt, i);
	    break;
	  }
    }
  gpt_close (&gpt);
  return err;
}

static grub_extcmd_t cmd_next_handle, cmd_find_label_handle;

GRUB_MOD_INIT (gptprio)
{
  crc_init ();
  cmd_next_handle =
    grub_register_extcmd ("gptprio.next", cmd_next, 0,
			  N_("-d DEVVAR -u UUIDVAR [DISK]"),
			  N_("Choose the BOOT partition by GPT priority, spend a try and "
			     "set DEVVAR and UUIDVAR."), next_options);
  cmd_find_label_handle =
    grub_register_extcmd ("gptprio.find_label", cmd_find_label, 0,
			  N_("-s VARNAME LABEL [DISK]"),
			  N_("Set VARNAME to the partition whose GPT name is LABEL."),
			  label_options);
}

GRUB_MOD_FINI (gptprio)
{
  grub_unregister_extcmd (cmd_next_handle);
  grub_unregister_extcmd (cmd_find_label_handle);
}
