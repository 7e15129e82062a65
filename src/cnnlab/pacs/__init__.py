"""The hospital's workflow (layer "clinic"): DICOM images from a PACS over DICOMweb or pushed by
C-STORE, screened through `cnnlab.predict`'s one path, and the answers stored back into the
same study as a DICOM Structured Report (`structured`) and a Secondary Capture with the
Grad-CAM and the verdict burned in (`secondary`), every decision on record (`cnnlab.records`)."""
